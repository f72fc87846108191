// Entry of masked_gram: validate once (shapes, dtypes, devices, finite J, w in [0, 1]), make contiguous, call the
// kernel of the device.
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "common/checks.h"
#include "masked_gram.h"
#include "registration.h"

namespace {

// J: (B, P, D), w: (B, P) or (P,) in [0, 1] -> (J contiguous, w as (Bw, P) contiguous in J's accumulation dtype)
std::pair<at::Tensor, at::Tensor> checked(const at::Tensor& J, const at::Tensor& w) {
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
  lowrankedit::check_finite(op, "J", J);
  auto wc = w.to(at::toOpMathType(J.scalar_type())).reshape({w.dim() == 1 ? int64_t(1) : B, P}).contiguous();
  lowrankedit::check_range(op, "w", wc, 0.0, 1.0, "in [0, 1]");
  return {J.contiguous(), wc};
}

std::tuple<at::Tensor, at::Tensor> masked_gram_cpu_entry(const at::Tensor& J, const at::Tensor& w) {
  auto [Jc, wc] = checked(J, w);
  return masked_gram_cpu(Jc, wc);
}
#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> masked_gram_cuda_entry(const at::Tensor& J, const at::Tensor& w) {
  auto [Jc, wc] = checked(J, w);
  return masked_gram_cuda(Jc, wc);
}
#endif

}  // namespace

TORCH_LIBRARY_FRAGMENT(lowrankedit, m) { m.def("masked_gram(Tensor J, Tensor w) -> (Tensor G_in, Tensor G_out)"); }
LOWRANKEDIT_IMPL(masked_gram, &masked_gram_cpu_entry, &masked_gram_cuda_entry)
