#pragma once
// Input checks shared by every op's public entry (pyext/<op>.cpp). Each message names the op, the argument,
// what was expected and what was received.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <cmath>

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
  TORCH_CHECK(std::isfinite(v), op, ": expected ", name, " to be finite, got ", v);
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
