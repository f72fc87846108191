// Top-k symmetric-definite generalized eigenpairs by block Krylov through a Cholesky factor (see the header).
// Costs: the Cholesky (D^3 / 3 flops, once), then per restart (steps + 1) applications of C to (D, p) blocks, each
// 2 D^2 p (triangular solves) + 2 D^2 p (GEMM) flops, against the dense route's D^3 (two more triangular solves on
// (D, D)) + the full symmetric eigensolver.
#include "generalized_eigh_topk.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

#include "block_krylov.h"

namespace lowrankedit {

GeneralizedEighTopkResult generalized_eigh_topk(const at::Tensor& A, const at::Tensor& B,
                                                const GeneralizedEighTopkOptions& o) {
  constexpr const char* op = "generalized_eigh_topk";
  const int64_t D = A.size(0);
  TORCH_CHECK(o.k >= 1 && o.k <= D, op, ": expected k in [1, ", D, "], got ", o.k);
  const auto As = (A + A.mT()) * 0.5;
  auto Bs = (B + B.mT()) * 0.5;
  const double shift = o.tau * B.diagonal().sum().item<double>();
  Bs.diagonal().add_(shift);
  auto [L, info] = at::linalg_cholesky_ex(Bs, /*upper=*/false, /*check_errors=*/false);
  Bs = at::Tensor();  // free it before the iterations
  const int64_t bad = info.item<int64_t>();
  TORCH_CHECK(bad == 0, op, ": B + tau*tr(B)*I is not positive definite (its leading minor of order ", bad,
              " is not positive) with tau = ", o.tau, "; a singular or indefinite B needs tau > 0 (the paper uses ",
              "tau = 1e-3)");
  const auto LT = L.mT();  // a view: the solves read it transposed, no copy
  int64_t applications = 0;
  const BlockOperator apply = [&](const at::Tensor& V) {
    ++applications;
    const auto X = at::linalg_solve_triangular(LT, V, /*upper=*/true, /*left=*/true, /*unitriangular=*/false);
    return at::linalg_solve_triangular(L, at::matmul(As, X), /*upper=*/false, /*left=*/true, false);
  };

  // Block and depth within D: a basis of p (steps + 1) <= D columns (for small D, one block spanning everything).
  int64_t p = o.block > 0 ? o.block : o.k + std::max<int64_t>(o.k, 8);
  TORCH_CHECK(p >= o.k, op, ": expected block >= k = ", o.k, ", got ", o.block);
  p = std::min(p, D);
  const int64_t steps = std::max<int64_t>(0, std::min(o.steps, D / p - 1));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  auto X0 = at::randn({D, p}, gen, A.options().device(at::kCPU)).to(A.device());

  GeneralizedEighTopkResult res;
  res.block = p;
  res.steps = steps;
  RitzPairs ritz;
  for (int64_t r = 0;; ++r) {
    ritz = block_krylov_ritz(apply, X0, steps, /*by_magnitude=*/false);
    const auto lead = ritz.values.narrow(0, 0, 1).abs().clamp_min(std::numeric_limits<double>::min());
    const auto rel = ritz.residuals.narrow(0, 0, o.k) / lead;
    res.restarts = r;
    res.residuals = rel;
    if (rel.max().item<double>() <= o.tol) {
      res.converged = true;
      break;
    }
    if (r >= o.max_restarts || p * (steps + 1) >= D) break;  // a full basis is exact: nothing left to gain
    X0 = ritz.vectors.narrow(1, 0, p);
  }
  res.applications = applications;
  res.eigenvalues = ritz.values.narrow(0, 0, o.k).contiguous();
  auto X = at::linalg_solve_triangular(LT, ritz.vectors.narrow(1, 0, o.k), /*upper=*/true, /*left=*/true, false);
  // Deterministic sign: each column's largest-magnitude entry positive; then the chosen normalization.
  const auto idx = X.abs().argmax(0, /*keepdim=*/true);
  const auto sign = at::where(X.gather(0, idx) < 0, -1.0, 1.0).to(X.scalar_type());
  X = X * sign;
  if (o.unit_norm) X = X / at::linalg_vector_norm(X, 2, {0}, true, c10::nullopt);
  res.eigenvectors = X.contiguous();
  return res;
}

}  // namespace lowrankedit
