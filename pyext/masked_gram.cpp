// Public entry of masked_gram: validate once, make contiguous, dispatch by device.
#include <ATen/OpMathType.h>
#include <torch/extension.h>

#include "common/checks.h"
#include "masked_gram.h"

// J: (B, P, D), w: (B, P) or (P,) in [0, 1] -> (G_in, G_out) each (B, D, D):
//   G_in = J^T diag(w) J,  G_out = J^T diag(1 - w) J
std::tuple<at::Tensor, at::Tensor> masked_gram(const at::Tensor& J, const at::Tensor& w) {
  constexpr const char* op = "masked_gram";
  lowrankedit::check_floating(op, "J", J);
  lowrankedit::check_floating(op, "w", w);
  lowrankedit::check_dim(op, "J", J, 3, "(B, P, D)");
  TORCH_CHECK(w.dim() == 1 || w.dim() == 2, op, ": expected w of shape (B, P) or (P,), got ", w.sizes());
  const int64_t B = J.size(0), P = J.size(1);
  if (w.dim() == 1) {
    TORCH_CHECK(w.size(0) == P, op, ": expected w of shape (P,) = (", P, ",) to match J ", J.sizes(), ", got ",
                w.sizes());
  } else {
    TORCH_CHECK(w.size(0) == B && w.size(1) == P, op, ": expected w of shape (B, P) = (", B, ", ", P,
                ") to match J ", J.sizes(), ", got ", w.sizes());
  }
  lowrankedit::check_same_device(op, "J", J, "w", w);
  lowrankedit::check_backend(op, J);
  const auto acc_type = at::toOpMathType(J.scalar_type());
  auto wc = w.to(acc_type).reshape({w.dim() == 1 ? int64_t(1) : B, P}).contiguous();
  if (wc.numel() > 0) {
    TORCH_CHECK_VALUE(!wc.isnan().any().item<bool>(), op, ": w contains NaN");
    const auto mm = at::aminmax(wc);
    const double lo = std::get<0>(mm).item<double>(), hi = std::get<1>(mm).item<double>();
    TORCH_CHECK_VALUE(lo >= 0 && hi <= 1, op, ": expected w in [0, 1], got values in [", lo, ", ", hi, "]");
  }
  const auto Jc = J.contiguous();
#ifdef WITH_CUDA
  if (Jc.is_cuda()) return masked_gram_cuda(Jc, wc);
#endif
  return masked_gram_cpu(Jc, wc);
}

void bind_masked_gram(pybind11::module_& m) {
  m.def("masked_gram", &masked_gram,
        "J (B, P, D), w (B, P) or (P,) in [0, 1] -> (J^T diag(w) J, J^T diag(1-w) J), each (B, D, D); "
        "float16/bfloat16 accumulate and return float32",
        pybind11::arg("J"), pybind11::arg("w"));
}
