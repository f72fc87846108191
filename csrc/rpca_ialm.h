#pragma once
// Robust PCA (principal component pursuit) of a symmetric matrix by the inexact ALM of Lin, Chen and Ma (2010,
// Algorithm 5) with a partial, rank-adaptive SVT: min ||L||_* + lamb ||S||_1 s.t. L + S = M. Their penalty schedule
// is made to converge on Jacobian Grams (see csrc/rpca_ialm.cpp); alpha = 1, balance = false, mu_max_factor = 1e7
// is theirs exactly.
#include <ATen/ATen.h>

#include <cstdint>

namespace lowrankedit {

struct RpcaIalmOptions {
  double lamb = 0;              // > 0; 0: 1 / sqrt(n)
  double tol = 1e-7;            // stop when the primal AND dual residuals are <= tol ||M||_F
  int64_t max_iter = 1000;
  double mu0 = 0;               // > 0; 0: 1.25 / ||M||_2 (Lin et al.)
  double rho = 1.5;             // growth: mu <- min(rho mu, mu_max_factor mu0) every iteration (Lin et al.) ...
  double mu_max_factor = 1e5;   //   (their cap is 1e7)
  bool balance = true;          // ... until mu reaches the cap; then residual balancing (rpca::balanced_penalty)
  double alpha = 1.6;           // over-relaxation in (0, 2) of the sparse part in the L-step and the dual update
  bool exact_svt = false;       // full eigendecomposition every iteration (the reference route)
  int64_t rank_guess = 10;      // the first partial SVT's rank estimate (Lin et al.'s sv = 10)
  int64_t steps = 1;            // block Krylov steps of an iteration's first partial-SVT attempt (warm-started:
                                //   usually enough); each retry adds one, up to 2 more
  int64_t oversample = 2;       // columns beyond the predicted rank + 1 (random, after the warm start's)
  double svt_tol = 1e-10;       // Ritz pairs accepted when ||X u - theta u|| <= svt_tol ||X||_2
  int64_t tail_block = 8;       // the certificate: block width and steps of the Lanczos estimate of the largest
  int64_t tail_steps = 12;      //   |eigenvalue| of the final SVT argument outside the kept eigenvectors
  uint64_t seed = 0;
};

struct RpcaIalmResult {
  at::Tensor L, S;              // (n, n), M's dtype
  int64_t iterations = 0;
  bool converged = false;       // primal <= tol and dual <= tol
  double primal = 0;            // ||M - L - S||_F / ||M||_F
  double dual = 0;              // mu ||L_k - L_{k-1}||_F / n (the S-step's optimality gap, per entry, in the
                                //   multiplier's units: the same for M and c M)
  int64_t rank = 0;             // rank of L (eigenvalues of the SVT argument above the threshold)
  double mu = 0, mu0 = 0, lamb = 0;
  double threshold = 0;         // the last SVT threshold 1 / mu
  double tail = 0;              // estimated largest |eigenvalue| of the last SVT argument outside the kept ones
  double gap = 0;               // (threshold - tail) / threshold: > 0 means the partial SVT kept every survivor
  bool certified = false;       // converged and gap > 0
  int64_t block = 0;            // the partial SVT's final block width
  int64_t svt_attempts = 0;     // block Krylov passes over all iterations
  int64_t full_svt = 0;         // iterations that used the full eigendecomposition (block too wide, or exact_svt)
};

// M: (n, n) symmetric (only (M + M^T) / 2 is used), float32/float64, validated by the caller; the iteration runs in
// float64.
RpcaIalmResult rpca_ialm(const at::Tensor& M, const RpcaIalmOptions& options);

}  // namespace lowrankedit
