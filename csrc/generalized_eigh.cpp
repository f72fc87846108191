// The generalized_eigh driver: A x = lambda B' x with B' = sym(B) + tau tr(B) I, both symmetric, B' positive
// definite:  B' = L L^T (Cholesky), C = L^{-1} A L^{-T}, C y = lambda y (symmetric eigensolver), x = L^{-T} y.
// The Cholesky factor, the three triangular solves and the symmetric eigensolver are ATen's linalg_cholesky_ex /
// linalg_solve_triangular / linalg_eigh, i.e. LAPACK (potrf, trsm, syevd) on the CPU and cuSOLVER / cuBLAS on CUDA:
// blocked, tuned O(D^3) routines that no hand-written kernel here would beat, and the same calls serve both devices.
// The O(D^2) elementwise work around them is fused into our kernels (csrc/{cpu,cuda}/generalized_eigh_*):
//   prepare  - symmetrize A and B and add tau tr(B) to B's diagonal, batched, in one pass;
//   finalize - reverse to descending order, fix each eigenvector's sign and scale it to unit norm, in one pass.
#include "generalized_eigh.h"

#include <c10/util/Exception.h>

#include <string>

namespace lowrankedit {
namespace geigh {
namespace {

std::tuple<at::Tensor, at::Tensor> prepare(const at::Tensor& A, const at::Tensor& B, double tau) {
#ifdef WITH_CUDA
  if (A.is_cuda()) return generalized_eigh_prepare_cuda(A, B, tau);
#endif
  return generalized_eigh_prepare_cpu(A, B, tau);
}

std::tuple<at::Tensor, at::Tensor> finalize(const at::Tensor& w, const at::Tensor& X, bool unit_norm) {
#ifdef WITH_CUDA
  if (X.is_cuda()) return generalized_eigh_finalize_cuda(w, X, unit_norm);
#endif
  return generalized_eigh_finalize_cpu(w, X, unit_norm);
}

// Why the Cholesky of B'[n] failed, in words: the trace rule, then the spectrum of sym(B).
void not_positive_definite(const char* op, const at::Tensor& B3, const at::Tensor& Bs, int64_t n,
                                        int64_t minor, double tau) {
  const auto Bn = B3[n].to(at::kDouble);
  const double tr = Bn.diagonal().sum().item<double>();
  const double lo = at::linalg_eigvalsh((Bn + Bn.mT()) * 0.5, "L").min().item<double>();
  const double reg = tau * tr;
  std::string cause;
  if (tr == 0) {
    cause = "tr(B) = 0, so tau*tr(B)*I adds nothing whatever tau is (B is all zero or traceless); B itself must be "
            "positive definite";
  } else if (tr < 0) {
    cause = "tr(B) = " + std::to_string(tr) + " < 0: B is not positive semi-definite (a Gram never is so)";
  } else if (tau == 0) {
    cause = "B is singular or indefinite (smallest eigenvalue " + std::to_string(lo) +
            "); a singular B needs tau > 0 (the paper uses tau = 1e-3)";
  } else if (lo + reg <= 0) {
    cause = "B has the eigenvalue " + std::to_string(lo) + ", below -tau*tr(B) = " + std::to_string(-reg) +
            ": B is not positive semi-definite";
  } else {
    cause = "B + tau*tr(B)*I is positive definite only to rounding (smallest eigenvalue " +
            std::to_string(lo + reg) + "); use a larger tau";
  }
  TORCH_CHECK(false, op, ": B + tau*tr(B)*I is not positive definite (batch element ", n,
                    ": its leading minor of order ", minor, " is not positive) with tau = ", tau, ": ", cause);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> solve(const char* op, const at::Tensor& A3, const at::Tensor& B3, double tau,
                                         bool unit_norm) {
  auto [As, Bs] = prepare(A3, B3, tau);
  // L L^T = B'; info[n] = k > 0 when the leading minor of order k of B'[n] is not positive.
  auto [L, info] = at::linalg_cholesky_ex(Bs, /*upper=*/false, /*check_errors=*/false);
  const auto bad = info.gt(0);
  if (bad.any().item<bool>()) {
    const int64_t n = bad.to(at::kLong).argmax().item<int64_t>();
    not_positive_definite(op, B3, Bs, n, info[n].item<int64_t>(), tau);
  }
  // C = L^{-1} A L^{-T}: X1 = L^{-1} A, then C = L^{-1} X1^T (A symmetric, so X1^T = A L^{-T}).
  const auto X1 = at::linalg_solve_triangular(L, As, /*upper=*/false, /*left=*/true, /*unitriangular=*/false);
  const auto C = at::linalg_solve_triangular(L, X1.mT(), /*upper=*/false, /*left=*/true, /*unitriangular=*/false);
  auto [w, Y] = at::linalg_eigh(C, "L");  // ascending; reads the lower triangle only
  // x = L^{-T} y: B'-orthonormal columns.
  const auto X = at::linalg_solve_triangular(L.mT(), Y, /*upper=*/true, /*left=*/true, /*unitriangular=*/false);
  return finalize(w.contiguous(), X.contiguous(), unit_norm);
}

}  // namespace geigh
}  // namespace lowrankedit
