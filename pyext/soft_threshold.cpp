// Public entry of soft_threshold: validate once, make contiguous, dispatch by device.
#include <torch/extension.h>

#include "common/checks.h"
#include "soft_threshold.h"

at::Tensor soft_threshold(const at::Tensor& X, double tau) {
  constexpr const char* op = "soft_threshold";
  lowrankedit::check_floating(op, "X", X);
  lowrankedit::check_finite_scalar(op, "tau", tau);
  TORCH_CHECK(tau >= 0, op, ": expected tau >= 0, got ", tau);
  lowrankedit::check_backend(op, X);
  const auto Xc = X.contiguous();
#ifdef WITH_CUDA
  if (Xc.is_cuda()) return soft_threshold_cuda(Xc, tau);
#endif
  return soft_threshold_cpu(Xc, tau);
}

void bind_soft_threshold(pybind11::module_& m) {
  m.def("soft_threshold", &soft_threshold,
        "X (...) -> sign(X) * max(|X| - tau, 0), elementwise (float32/float64/float16/bfloat16, CPU or CUDA)",
        pybind11::arg("X"), pybind11::arg("tau"));
}
