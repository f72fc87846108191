// Entry of soft_threshold: validate once, make contiguous, call the kernel of the device (which also finds NaN / Inf in
// X, in the same pass).
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
  return X.contiguous();
}

// The kernel's flag says X is not finite; the scan that words the error (NaN or Inf) runs only then.
at::Tensor finite_result(const at::Tensor& X, std::pair<at::Tensor, bool> out) {
  if (out.second) lowrankedit::check_finite("soft_threshold", "X", X);
  return out.first;
}

at::Tensor soft_threshold_cpu_entry(const at::Tensor& X, double tau) {
  const auto Xc = checked(X, tau);
  return finite_result(Xc, soft_threshold_cpu(Xc, tau));
}
#ifdef WITH_CUDA
at::Tensor soft_threshold_cuda_entry(const at::Tensor& X, double tau) {
  const auto Xc = checked(X, tau);
  return finite_result(Xc, soft_threshold_cuda(Xc, tau));
}
#endif

}  // namespace

TORCH_LIBRARY_FRAGMENT(lowrankedit, m) { m.def("soft_threshold(Tensor X, float tau) -> Tensor"); }
LOWRANKEDIT_IMPL(soft_threshold, &soft_threshold_cpu_entry, &soft_threshold_cuda_entry)
