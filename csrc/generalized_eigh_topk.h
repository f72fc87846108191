#pragma once
// The k leading eigenpairs of A x = lambda (B + tau tr(B) I) x without forming L^{-1} A L^{-T}.
#include <ATen/ATen.h>

#include <cstdint>

namespace lowrankedit {

struct GeneralizedEighTopkOptions {
  int64_t k = 10;             // eigenpairs wanted, largest first
  double tau = 1e-3;          // B' = sym(B) + tau tr(B) I
  int64_t block = 0;          // Krylov block width p >= k; 0: k + max(k, 8)
  int64_t steps = 3;          // block Krylov steps per restart (the basis has p (steps + 1) columns)
  double tol = 1e-10;         // converged when ||C y - l y|| <= tol * |l_1| for the k wanted pairs
  int64_t max_restarts = 200;
  uint64_t seed = 0;          // the random start block (drawn on the CPU, so every device starts alike)
  bool unit_norm = true;      // unit Euclidean columns, else B'-orthonormal
};

struct GeneralizedEighTopkResult {
  at::Tensor eigenvalues;   // (k,) descending
  at::Tensor eigenvectors;  // (D, k), largest-magnitude entry of each column positive
  at::Tensor residuals;     // (k,) ||C y_j - l_j y_j|| / |l_1| of the symmetric problem C = L^{-1} A L^{-T}
  int64_t restarts = 0;
  int64_t applications = 0;  // block applications of C (each: two triangular solves and one GEMM on (D, p))
  int64_t block = 0;
  int64_t steps = 0;
  bool converged = false;
};

// A, B: (D, D) float32/float64 on one device (validated by the caller) -> the k leading pairs.
// B' = L L^T (one Cholesky); C v = L^{-1} (A (L^{-T} v)) is applied to (D, p) blocks by triangular solves; block
// Krylov Rayleigh-Ritz with restarts from the leading Ritz vectors; x = L^{-T} y.
GeneralizedEighTopkResult generalized_eigh_topk(const at::Tensor& A, const at::Tensor& B,
                                                const GeneralizedEighTopkOptions& options);

}  // namespace lowrankedit
