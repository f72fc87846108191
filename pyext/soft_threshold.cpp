// Entry of soft_threshold: validate once, make contiguous, call the kernel of the device (which also finds NaN / Inf in
// X, in the same pass).
#include <torch/autograd.h>
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

// d soft_threshold(X) / dX = 1 where |X| > tau, else 0. In C++ on the Autograd key: a Python autograd kernel cost
// every call (grad or not) about 5 us, more than the whole op on small inputs.
class SoftThresholdFunction : public torch::autograd::Function<SoftThresholdFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& X, double tau) {
    at::AutoDispatchBelowADInplaceOrView below;
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("lowrankedit::soft_threshold", "")
                               .typed<at::Tensor(const at::Tensor&, double)>();
    ctx->save_for_backward({X});
    ctx->saved_data["tau"] = tau;
    return op.call(X, tau);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const auto X = ctx->get_saved_variables()[0];
    const double tau = ctx->saved_data["tau"].toDouble();
    return {grad[0] * (X.abs() > tau).to(grad[0].scalar_type()), at::Tensor()};
  }
};

at::Tensor soft_threshold_autograd(const at::Tensor& X, double tau) { return SoftThresholdFunction::apply(X, tau); }

}  // namespace

TORCH_LIBRARY_FRAGMENT(lowrankedit, m) { m.def("soft_threshold(Tensor X, float tau) -> Tensor"); }
LOWRANKEDIT_IMPL(soft_threshold, &soft_threshold_cpu_entry, &soft_threshold_cuda_entry)
TORCH_LIBRARY_IMPL(lowrankedit, Autograd, m) { m.impl("soft_threshold", &soft_threshold_autograd); }
