// Entry of _rpca_step (the fused elementwise half of a robust-PCA iteration, exposed for tests; the rpca driver in
// csrc/rpca.cpp calls the kernels directly): validate, call the kernel of the device. S, Y and A are updated in
// place, so they must already be contiguous.
#include <torch/library.h>

#include "common/checks.h"
#include "registration.h"
#include "rpca_step.h"

namespace {

void checked(const at::Tensor& M, const at::Tensor& L, at::Tensor S, at::Tensor Y, at::Tensor A,
                     const at::Tensor& mu, const at::Tensor& lamb, const at::Tensor& mu_next,
                     const at::Tensor& active, const at::Tensor& alpha) {
  constexpr const char* op = "_rpca_step";
  TORCH_CHECK(M.defined() && (M.scalar_type() == at::kFloat || M.scalar_type() == at::kDouble), op,
              ": expected M to be a float32 or float64 tensor");
  lowrankedit::check_dim(op, "M", M, 2, "(B, N)");
  lowrankedit::check_backend(op, M);
  const int64_t B = M.size(0);
  const std::pair<const char*, const at::Tensor*> mats[] = {{"L", &L}, {"S", &S}, {"Y", &Y}, {"A", &A}};
  for (const auto& [name, t] : mats) {
    TORCH_CHECK(t->defined() && t->sizes() == M.sizes(), op, ": expected ", name, " of shape ", M.sizes(),
                ", got ", t->defined() ? t->sizes() : at::IntArrayRef{});
    lowrankedit::check_same_dtype(op, "M", M, name, *t);
    lowrankedit::check_same_device(op, "M", M, name, *t);
    TORCH_CHECK(t->is_contiguous(), op, ": expected ", name, " to be contiguous");
  }
  TORCH_CHECK(M.is_contiguous(), op, ": expected M to be contiguous");
  const std::pair<const char*, const at::Tensor*> scal[] = {
      {"mu", &mu}, {"lamb", &lamb}, {"mu_next", &mu_next}, {"alpha", &alpha}};
  for (const auto& [name, t] : scal) {
    TORCH_CHECK(t->defined() && t->scalar_type() == at::kDouble && t->dim() == 1 && t->size(0) == B &&
                    t->is_contiguous(),
                op, ": expected ", name, " to be a contiguous float64 tensor of shape (", B, ")");
    lowrankedit::check_same_device(op, "M", M, name, *t);
  }
  TORCH_CHECK(active.defined() && active.scalar_type() == at::kBool && active.dim() == 1 && active.size(0) == B &&
                  active.is_contiguous(),
              op, ": expected active to be a contiguous bool tensor of shape (", B, ")");
  lowrankedit::check_same_device(op, "M", M, "active", active);
}

at::Tensor rpca_step_cpu_entry(const at::Tensor& M, const at::Tensor& L, at::Tensor S, at::Tensor Y, at::Tensor A,
                               const at::Tensor& mu, const at::Tensor& lamb, const at::Tensor& mu_next,
                               const at::Tensor& active, const at::Tensor& alpha) {
  checked(M, L, S, Y, A, mu, lamb, mu_next, active, alpha);
  return rpca_step_cpu(M, L, S, Y, A, mu, lamb, mu_next, active, alpha);
}
#ifdef WITH_CUDA
at::Tensor rpca_step_cuda_entry(const at::Tensor& M, const at::Tensor& L, at::Tensor S, at::Tensor Y, at::Tensor A,
                                const at::Tensor& mu, const at::Tensor& lamb, const at::Tensor& mu_next,
                                const at::Tensor& active, const at::Tensor& alpha) {
  checked(M, L, S, Y, A, mu, lamb, mu_next, active, alpha);
  return rpca_step_cuda(M, L, S, Y, A, mu, lamb, mu_next, active, alpha);
}
#endif

}  // namespace

// One fused pass with over-relaxation alpha: Lh = alpha L + (1 - alpha)(M - S); S = shrink(M - Lh - Y/mu, lamb/mu);
// Y += mu (Lh + S - M); A = M - S - Y/mu_next; returns (B, 2) float64 (||L + S - M||^2,
// ||(alpha - 1)(L + S_old - M) + S - S_old||^2); S, Y, A (B, N) updated in place.
TORCH_LIBRARY_FRAGMENT(lowrankedit, m) {
  m.def("_rpca_step(Tensor M, Tensor L, Tensor(a!) S, Tensor(b!) Y, Tensor(c!) A, Tensor mu, Tensor lamb, "
        "Tensor mu_next, Tensor active, Tensor alpha) -> Tensor norms");
}
LOWRANKEDIT_IMPL(_rpca_step, &rpca_step_cpu_entry, &rpca_step_cuda_entry)
