#pragma once
// Input checks shared by every op's public entry (pyext/<op>.cpp). Each message names the op, the argument,
// what was expected and what was received. Value errors (NaN/Inf, ranges) raise c10::ValueError (Python
// ValueError); shape, dtype and device errors raise c10::Error (Python RuntimeError). Only the entries call these:
// the solvers in csrc/ call each other without re-checking.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <cmath>
#include <string>

namespace lowrankedit {

inline bool is_supported_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

inline void check_floating(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.defined(), op, ": expected ", name, " to be a tensor, got an undefined tensor");
  TORCH_CHECK(is_supported_float(t.scalar_type()), op, ": expected ", name,
              " to have dtype float32, float64, float16 or bfloat16, got ", t.scalar_type());
}

inline void check_dim(const char* op, const char* name, const at::Tensor& t, int64_t dim, const char* shape) {
  TORCH_CHECK(t.dim() == dim, op, ": expected ", name, " of shape ", shape, ", got ", t.sizes());
}

inline void check_min_dim(const char* op, const char* name, const at::Tensor& t, int64_t dim, const char* shape) {
  TORCH_CHECK(t.dim() >= dim, op, ": expected ", name, " of shape ", shape, ", got ", t.sizes());
}

inline void check_same_device(const char* op, const char* a_name, const at::Tensor& a, const char* b_name,
                              const at::Tensor& b) {
  TORCH_CHECK(a.device() == b.device(), op, ": expected ", a_name, " and ", b_name,
              " on the same device, got ", a.device(), " and ", b.device());
}

inline void check_same_dtype(const char* op, const char* a_name, const at::Tensor& a, const char* b_name,
                             const at::Tensor& b) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), op, ": expected ", a_name, " and ", b_name,
              " to have the same dtype, got ", a.scalar_type(), " and ", b.scalar_type());
}

inline void check_finite_scalar(const char* op, const char* name, double v) {
  TORCH_CHECK_VALUE(std::isfinite(v), op, ": expected ", name, " to be finite, got ", v);
}

// The smallest and largest entry of t, refusing NaN / Inf: one fused min/max reduction (NaN propagates through
// it, an Inf shows as an extreme) and one host sync; the slower NaN-or-Inf test runs only to word the error.
inline std::pair<double, double> finite_extremes(const char* op, const char* name, const at::Tensor& t) {
  const auto mm = at::aminmax(t);
  const double a = std::get<0>(mm).item<double>(), b = std::get<1>(mm).item<double>();
  if (!(std::isfinite(a) && std::isfinite(b))) {
    const bool has_nan = at::isnan(t).any().item<bool>();
    TORCH_CHECK_VALUE(false, op, ": expected ", name, " to be finite, got ", has_nan ? "NaN" : "Inf", " entries");
  }
  return {a, b};
}

// NaN / Inf anywhere in t (nothing to check for an empty or integer tensor).
inline void check_finite(const char* op, const char* name, const at::Tensor& t) {
  if (t.numel() == 0 || !at::isFloatingType(t.scalar_type())) return;
  finite_extremes(op, name, t);
}

// An op's result came out NaN / Inf from inputs that passed the cheap checks, and `t` (checked through that result,
// not scanned: see masked_gram, panda_grad) is the only input left: it holds a NaN / Inf (worded by scanning it, only
// now), or else the result overflowed. `overflowed` names the result with its verb ("the loss overflows").
inline void refuse_nonfinite_result(const char* op, const char* name, const at::Tensor& t, const char* overflowed,
                                    at::ScalarType dtype) {
  check_finite(op, name, t);
  TORCH_CHECK_VALUE(false, op, ": ", overflowed, " ", dtype, ": ", name, " is finite but its largest |entry| is ",
                    t.abs().max().item<double>(), "; rescale ", name, " or pass float64");
}

// Every entry of t in [lo, hi] (and finite); the message gives the range found.
inline void check_range(const char* op, const char* name, const at::Tensor& t, double lo, double hi,
                        const char* expected) {
  if (t.numel() == 0) return;
  const auto [a, b] = finite_extremes(op, name, t);
  TORCH_CHECK_VALUE(a >= lo && b <= hi, op, ": expected ", name, " ", expected, ", got values in [", a, ", ", b,
                    "]");
}

// A CUDA tensor given to a CPU-only build: say how to rebuild instead of failing deep inside a kernel.
inline void check_backend(const char* op, const at::Tensor& t) {
#ifndef WITH_CUDA
  TORCH_CHECK(!t.is_cuda(), op, ": got a CUDA tensor, but lowrankedit was built without CUDA kernels; "
              "rebuild on a machine with nvcc: `FORCE_CUDA=1 bash scripts/setup.sh`");
#endif
  TORCH_CHECK(t.is_cpu() || t.is_cuda(), op, ": expected a CPU or CUDA tensor, got device ", t.device());
}

}  // namespace lowrankedit

namespace lowrankedit {

// A shape as Python prints a tuple: (2,), (2, 3), ().
inline std::string py_shape(at::IntArrayRef s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

// A per-matrix parameter (one value, or one per matrix of the batch shape) -> contiguous float64 (B,) on `device`,
// finite and > 0 (positive) or >= 0.
inline at::Tensor per_matrix(const char* op, const char* name, const at::Tensor& v, at::IntArrayRef batch_shape,
                             at::Device device, bool positive) {
  TORCH_CHECK_TYPE(v.defined() && !v.is_complex() && v.scalar_type() != at::kBool, op, ": expected ", name,
                   " to be a real number or a real tensor, got ", v.defined() ? c10::toString(v.scalar_type()) : "None");
  const int64_t B = c10::multiply_integers(batch_shape);
  const bool ok = v.numel() == 1 || v.sizes() == batch_shape || (v.dim() == 1 && v.numel() == B);
  TORCH_CHECK_VALUE(ok, op, ": expected ", name, " to be a scalar or of the batch shape ", py_shape(batch_shape),
                    ", got a tensor of shape ", py_shape(v.sizes()));
  auto t = v.to(device, at::kDouble).reshape({-1}).expand({B}).contiguous();
  if (B == 0) return t;
  const auto bad_finite = !at::isfinite(t).all().item<bool>();
  TORCH_CHECK_VALUE(!bad_finite, op, ": expected ", name, " to be finite, got ", v.cpu().reshape({-1}));
  const double lo = t.min().item<double>();
  TORCH_CHECK_VALUE(positive ? lo > 0 : lo >= 0, op, ": expected ", name, positive ? " > 0" : " >= 0", ", got ",
                    v.numel() == 1 ? std::to_string(v.item<double>()) : "a minimum of " + std::to_string(lo));
  return t;
}

}  // namespace lowrankedit
