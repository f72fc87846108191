// Entry of soft_threshold: validate once, make contiguous, call the kernel of the device.
#include <torch/library.h>

#include "common/checks.h"
#include "registration.h"
#include "soft_threshold.h"

namespace {

at::Tensor checked(const at::Tensor& X, double tau) {
  constexpr const char* op = "soft_threshold";
  lowrankedit::check_floating(op, "X", X);
  lowrankedit::check_finite_scalar(op, "tau", tau);
  TORCH_CHECK_VALUE(tau >= 0, op, ": expected tau >= 0, got ", tau);
  lowrankedit::check_backend(op, X);
  lowrankedit::check_finite(op, "X", X);
  return X.contiguous();
}

at::Tensor soft_threshold_cpu_entry(const at::Tensor& X, double tau) { return soft_threshold_cpu(checked(X, tau), tau); }
#ifdef WITH_CUDA
at::Tensor soft_threshold_cuda_entry(const at::Tensor& X, double tau) {
  return soft_threshold_cuda(checked(X, tau), tau);
}
#endif

}  // namespace

TORCH_LIBRARY_FRAGMENT(lowrankedit, m) { m.def("soft_threshold(Tensor X, float tau) -> Tensor"); }
LOWRANKEDIT_IMPL(soft_threshold, &soft_threshold_cpu_entry, &soft_threshold_cuda_entry)
