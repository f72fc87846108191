// Entry of masked_gram: validate once (shapes, dtypes, devices, w in [0, 1]), make contiguous, call the kernel of the
// device, then check J's values through the Grams' diagonals (see checked_result).
#include <ATen/OpMathType.h>
#include <torch/autograd.h>
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
  auto wc = w.to(at::toOpMathType(J.scalar_type())).reshape({w.dim() == 1 ? int64_t(1) : B, P}).contiguous();
  lowrankedit::check_range(op, "w", wc, 0.0, 1.0, "in [0, 1]");
  return {J.contiguous(), wc};
}

// NaN / Inf in J without a pass over J: every entry J[b, p, d] reaches the diagonal G[b, d, d] of at least one Gram
// as w J^2 or (1 - w) J^2 (the weights sum to 1, and sums of non-negative terms cannot cancel an Inf), so both
// diagonals are finite exactly when J is finite and nothing overflowed. Only then is J scanned, to word the error.
// (Scanning J first cost about 0.1 ms, a quarter of a (1, 4096, 100) call.)
std::tuple<at::Tensor, at::Tensor> checked_result(const at::Tensor& J, std::tuple<at::Tensor, at::Tensor> G) {
  constexpr const char* op = "masked_gram";
  const auto& [G_in, G_out] = G;
  if (G_in.numel() == 0) return G;
  const auto diag = at::stack({G_in.diagonal(0, 1, 2), G_out.diagonal(0, 1, 2)});
  if (at::isfinite(diag).all().item<bool>()) return G;
  lowrankedit::refuse_nonfinite_result(op, "J", J, "the Grams overflow", G_in.scalar_type());
  return G;  // not reached
}

std::tuple<at::Tensor, at::Tensor> masked_gram_cpu_entry(const at::Tensor& J, const at::Tensor& w) {
  auto [Jc, wc] = checked(J, w);
  return checked_result(Jc, masked_gram_cpu(Jc, wc));
}
#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> masked_gram_cuda_entry(const at::Tensor& J, const at::Tensor& w) {
  auto [Jc, wc] = checked(J, w);
  return checked_result(Jc, masked_gram_cuda(Jc, wc));
}
#endif

// G = J^T diag(w) J  =>  dJ = diag(w) J (g + g^T), and likewise with 1 - w; not differentiable in w. In C++ on the
// Autograd key: a Python autograd kernel cost every call (grad or not) about 5 us.
class MaskedGramFunction : public torch::autograd::Function<MaskedGramFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& J,
                                                const at::Tensor& w) {
    at::AutoDispatchBelowADInplaceOrView below;
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("lowrankedit::masked_gram", "")
                               .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&)>();
    auto [G_in, G_out] = op.call(J, w);
    ctx->save_for_backward({J, w});
    return {G_in, G_out};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto& J = saved[0];
    const auto acc = at::toOpMathType(J.scalar_type());
    const auto Ja = J.to(acc);
    auto wa = saved[1].to(acc);
    wa = (wa.dim() == 2 ? wa : wa.unsqueeze(0)).unsqueeze(-1);  // (B or 1, P, 1)
    auto dJ = at::zeros_like(Ja);
    if (grad[0].defined()) dJ = dJ + wa * at::matmul(Ja, (grad[0] + grad[0].mT()).to(acc));
    if (grad[1].defined()) dJ = dJ + (1 - wa) * at::matmul(Ja, (grad[1] + grad[1].mT()).to(acc));
    return {dJ.to(J.scalar_type()), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> masked_gram_autograd(const at::Tensor& J, const at::Tensor& w) {
  auto out = MaskedGramFunction::apply(J, w);
  return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(lowrankedit, m) { m.def("masked_gram(Tensor J, Tensor w) -> (Tensor G_in, Tensor G_out)"); }
LOWRANKEDIT_IMPL(masked_gram, &masked_gram_cpu_entry, &masked_gram_cuda_entry)
TORCH_LIBRARY_IMPL(lowrankedit, Autograd, m) { m.impl("masked_gram", &masked_gram_autograd); }
