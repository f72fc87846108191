#pragma once
// Robust PCA (principal component pursuit), batched: min ||L||_* + lamb ||S||_1 s.t. L + S = M. The whole solver
// lives here: defaults, scaling, the iteration (SVT, then the fused rpca_step kernel), and the one place for the
// stopping, stall and certification rules. The op's entry (pyext/rpca.cpp) validates and calls solve().
#include <ATen/ATen.h>

#include <algorithm>
#include <functional>

namespace lowrankedit {
namespace rpca {

constexpr double kMuScale = 40.0;   // "ialm": mu0 = kMuScale / ||M||_2 (measured on the DCGAN Grams: 20 and 80 took
                                    // 1.3-3x the iterations)
constexpr double kEta = 10.0;       // "ialm": mu grows while the primal residual exceeds kEta x the dual one
constexpr double kMuFloor = 1e-3;   // residual balancing keeps mu within [kMuFloor, kMuCeiling] x its start
constexpr double kMuCeiling = 1e10;

// Residual balancing, the one rule of both solvers ("ialm" here, rpca_ialm's after its growth phase): mu grows by
// `grow` while the primal residual exceeds kEta x the dual one and, with `shrink`, falls by it while the dual one
// exceeds kEta x the primal; kept in [mu_min, mu_max].
inline double balanced_penalty(double mu, double primal, double dual, double grow, double mu_min, double mu_max,
                               bool shrink) {
  if (primal > kEta * dual) return std::min(mu * grow, mu_max);
  if (shrink && dual > kEta * primal) return std::max(mu / grow, mu_min);
  return mu;
}
constexpr int64_t kKrylovSteps = 2; // block Krylov steps of the partial SVT (2 and 3 gave the same iterates to 1e-9)
constexpr int64_t kChunk = 50;      // iterations between the stall checks (and progress reports)
constexpr int64_t kStall = 10;      // "ialm": chunks without the residual halving before over-relaxation stops

struct Progress {
  int64_t iterations;  // the most iterations any matrix has taken
  double primal, dual; // the largest relative residuals
  int64_t active;      // matrices still iterating
};

struct Options {
  bool official = false;  // the official LowRankGAN ADMM (fixed mu, primal-only stopping) instead of "ialm"
  double tol = 1e-7;
  int64_t max_iter = 10000;
  int64_t symmetric = -1;  // 1: eigh, 0: SVD, -1: eigh when M is symmetric to rounding
  double rho = 2.0;        // "ialm": penalty growth factor (>= 1)
  double alpha = 1.6;      // "ialm": over-relaxation in (0, 2)
  std::function<void(const Progress&)> progress;  // called after each chunk (may be empty)
};

struct Result {
  at::Tensor L, S;                                   // (B, n, n), M's dtype and device
  at::Tensor iterations, converged, primal, dual;    // (B,) CPU: int64, bool, float64, float64
  at::Tensor rank;                                   // (B,) CPU int64
  at::Tensor mu;                                     // (B,) CPU float64, the final penalty (in M's units)
  bool symmetric = false;                            // eigendecompositions were used
};

// M: (B, n, n) contiguous finite float/double; lamb: (B,) float64 > 0 on M's device; mu: (B,) float64 > 0 on M's
// device or undefined (the method's default). Trusted input (the entry validated it).
Result solve(const at::Tensor& M, const at::Tensor& lamb, const at::Tensor& mu, const Options& opt);

}  // namespace rpca
}  // namespace lowrankedit
