#pragma once
#include <ATen/ATen.h>

// The elementwise half of one robust-PCA (principal component pursuit) iteration, fused into one pass over the
// batch.  Per batch entry b (skipped when active[b] is false) and element i, with mu = mu[b], lamb = lamb[b] and
// the over-relaxation a = alpha[b] (1: plain ADMM, the official iteration):
//   Lh    = a L + (1 - a)(M - S_old)                    relaxed low-rank part (= L when a = 1)
//   S_new = shrink(M - Lh - Y / mu, lamb / mu)          sparse part (prox of lamb ||S||_1)
//   R     = L + S_new - M                               primal residual
//   Y     = Y + mu * (Lh + S_new - M)                   dual (multiplier) update
//   A     = M - S_new - Y / mu_next[b]                  the argument of the next singular-value threshold
//   D     = (a - 1)(L + S_old - M) + S_new - S_old      dual residual / mu (the L-step's optimality gap)
//   norms[b] = (sum R^2, sum D^2)
// M, L: (B, N) read; S, Y, A: (B, N) updated in place; mu, lamb, mu_next, alpha: (B,) float64; active: (B,) bool
//   -> norms: (B, 2) float64 (zeros for inactive entries).  All tensors contiguous, on one device.
at::Tensor rpca_step_cpu(const at::Tensor& M, const at::Tensor& L, at::Tensor& S, at::Tensor& Y, at::Tensor& A,
                         const at::Tensor& mu, const at::Tensor& lamb, const at::Tensor& mu_next,
                         const at::Tensor& active, const at::Tensor& alpha);
#ifdef WITH_CUDA
at::Tensor rpca_step_cuda(const at::Tensor& M, const at::Tensor& L, at::Tensor& S, at::Tensor& Y, at::Tensor& A,
                          const at::Tensor& mu, const at::Tensor& lamb, const at::Tensor& mu_next,
                          const at::Tensor& active, const at::Tensor& alpha);
#endif
