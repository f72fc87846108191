// Robust PCA by the inexact ALM of Lin, Chen and Ma (Algorithm 5 of "The augmented Lagrange multiplier method for
// exact recovery of corrupted low-rank matrices", 2010) with a partial SVT (see the header).
//
// Iteration k (their order: the sparse step first):
//   S = shrink(M - L + Y/mu, lamb/mu);  L = SVT(M - S + Y/mu, 1/mu);  Y += mu (M - L - S);  mu = min(rho mu, mu_max)
// from Y0 = M / max(||M||_2, max|M| / lamb), mu0 = 1.25 / ||M||_2, L = S = 0. The L-step is exact given its SVT; the
// S-step's optimality is off by mu ||L_k - L_{k-1}||_F, the dual residual; both residuals <= tol ||M||_F stop it.
//
// The SVT of the symmetric argument X keeps the eigenvalues with |lambda| > 1/mu. Only those are computed: block
// Krylov Rayleigh-Ritz (block_krylov.h) from the previous iteration's Ritz vectors plus random columns, on a block of
// p columns with p above the predicted rank; when the survivors fill the block it grows (Lin et al.'s rule: the
// predicted rank becomes r + 5% of n, here at most r + max(5, r)), when the survivors' Ritz pairs have not converged it restarts from them. A
// block too wide for a small Krylov space (p (steps + 1) > n / 2) takes the full eigendecomposition instead.
// Certificate: at the end, the largest |eigenvalue| of the last SVT argument outside the kept eigenvectors is
// estimated by block Lanczos on the deflated operator (I - U U^T) X (I - U U^T) (exact for small n); gap =
// (1/mu - tail) mu > 0 says no eigenvalue above the threshold was missed.
// Cost per iteration: the Krylov products X V (n^2 p each), L = U diag(w) U^T into its buffer (n^2 r), and one
// fused pass over M, L, S, Y writing Y, the next S and X (rpca_ialm_passes.h); ||L_k - L_{k-1}||_F comes from the
// factors. Six (n, n) float64 buffers in all (M, Y, L, S, next S, X: 4.1 GB at n = 9216).
#include "rpca_ialm.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "block_krylov.h"
#include "rpca_ialm_passes.h"

namespace lowrankedit {

namespace {

constexpr int64_t kExtraColumns = 2;  // random columns added to the warm start: eigenvalues crossing the threshold
constexpr int64_t kMaxAttempts = 30;  // partial-SVT passes per iteration before the full eigendecomposition

struct Svt {
  at::Tensor U;  // (n, r) kept eigenvectors
  at::Tensor w;  // (r,) shrunk eigenvalues sign(l) (|l| - tau)
  int64_t rank = 0;
  double tail = 0;  // exact largest |eigenvalue| not kept (full route only)
  bool full = false;
};

at::Tensor randn_like_cpu(int64_t n, int64_t p, const at::Tensor& like, at::Generator& gen) {
  return at::randn({n, p}, gen, like.options().device(at::kCPU)).to(like.device());
}

Svt from_eigenpairs(const at::Tensor& values, const at::Tensor& vectors, double tau, int64_t r, double tail,
                    bool full) {
  Svt s;
  s.rank = r;
  s.U = vectors.narrow(1, 0, r);
  const auto v = values.narrow(0, 0, r);
  s.w = v.sign() * (v.abs() - tau);
  s.tail = tail;
  s.full = full;
  return s;
}

Svt full_svt(const at::Tensor& X, double tau) {
  auto [values, vectors] = at::linalg_eigh(X, "L");
  const auto order = std::get<1>(values.abs().sort(true, 0, true));
  values = values.index_select(0, order);
  vectors = vectors.index_select(1, order);
  const int64_t r = (values.abs() > tau).sum().item<int64_t>();
  const double tail = r < values.size(0) ? values[r].abs().item<double>() : 0.0;
  return from_eigenpairs(values, vectors, tau, r, tail, true);
}

// Largest |eigenvalue| of the symmetric operator (n x n) by block Lanczos from a random block: a lower estimate
// that converges quickly to the extreme eigenvalue; exact when the Krylov space spans everything.
double largest_magnitude(const BlockOperator& apply, int64_t n, int64_t block, int64_t steps, const at::Tensor& like,
                         at::Generator& gen, const at::Tensor& deflate) {
  block = std::min(block, n);
  steps = std::max<int64_t>(0, std::min(steps, n / block - 1));
  auto X0 = randn_like_cpu(n, block, like, gen);
  if (deflate.defined()) X0 = X0 - at::matmul(deflate, at::matmul(deflate.mT(), X0));
  return block_krylov_ritz(apply, X0, steps, true).values.abs().max().item<double>();
}

// The elementwise passes: one fused loop on the CPU (rpca_ialm_passes.h); elsewhere the same arithmetic from
// in-place ATen ops on the same buffers (no allocation per iteration either).
void sparse_step(const at::Tensor& M, const at::Tensor& Y, const at::Tensor& L, at::Tensor& S, at::Tensor& X,
                 double inv_mu, double thr) {
  if (M.is_cpu()) return rpca_ialm_sparse_step_cpu(M, Y, L, S, X, inv_mu, thr);
  at::add_out(X, M, Y, inv_mu);  // T
  at::sub_out(S, X, L);
  at::softshrink_out(S, S, thr);
  X.sub_(S);
}

double merged_step(const at::Tensor& M, const at::Tensor& L, const at::Tensor& S, at::Tensor& Y, at::Tensor& S_next,
                   at::Tensor& X, double mu, double inv_mu_next, double thr_next) {
  if (M.is_cpu()) return rpca_ialm_merged_step_cpu(M, L, S, Y, S_next, X, mu, inv_mu_next, thr_next);
  at::sub_out(X, M, L).sub_(S);  // Z
  const double z2 = X.square().sum().item<double>();
  Y.add_(X, mu);
  at::add_out(X, M, Y, inv_mu_next);  // T
  at::sub_out(S_next, X, L);
  at::softshrink_out(S_next, S_next, thr_next);
  X.sub_(S_next);
  return z2;
}

// ||U1 diag(w1) U1^T - U0 diag(w0) U0^T||_F from the factors (orthonormal U0, U1): with [U1 U0] = Q R, the
// difference is Q R diag(w1, -w0) R^T Q^T. Householder QR is backward stable, so this is as accurate as the dense
// difference (rounding of the order eps ||L||) without an (n, n) pass.
double factor_difference(const at::Tensor& U0, const at::Tensor& w0, const at::Tensor& U1, const at::Tensor& w1) {
  const bool has0 = U0.defined() && U0.size(1) > 0, has1 = U1.defined() && U1.size(1) > 0;
  if (!has0 && !has1) return 0.0;
  if (!has0) return at::linalg_vector_norm(w1, 2, c10::nullopt, false, c10::nullopt).item<double>();
  if (!has1) return at::linalg_vector_norm(w0, 2, c10::nullopt, false, c10::nullopt).item<double>();
  const auto R = std::get<1>(at::linalg_qr(at::cat({U1, U0}, 1), "r"));
  const auto D = at::matmul(R * at::cat({w1, -w0}).unsqueeze(0), R.mT());
  return at::linalg_matrix_norm(D, "fro").item<double>();
}

}  // namespace

RpcaIalmResult rpca_ialm(const at::Tensor& M_in, const RpcaIalmOptions& o) {
  const int64_t n = M_in.size(0);
  const auto M = ((M_in + M_in.mT()) * 0.5).to(at::kDouble).contiguous();
  RpcaIalmResult res;
  res.lamb = o.lamb > 0 ? o.lamb : 1.0 / std::sqrt(static_cast<double>(n));
  const double fro = at::linalg_matrix_norm(M, "fro").item<double>();
  if (fro == 0) {  // L = S = 0 solves it at once
    res.L = at::zeros_like(M_in);
    res.S = at::zeros_like(M_in);
    res.converged = res.certified = true;
    res.gap = 1;
    return res;
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const BlockOperator applyM = [&](const at::Tensor& V) { return at::matmul(M, V); };
  const bool small = n <= 4 * o.tail_block * (o.tail_steps + 1);
  const double norm2 = small ? at::linalg_eigvalsh(M, "L").abs().max().item<double>()
                             : largest_magnitude(applyM, n, o.tail_block, o.tail_steps, M, gen, at::Tensor());
  const double norm_inf = M.abs().max().item<double>() / res.lamb;
  auto Y = M / std::max(norm2, norm_inf);
  double mu = o.mu0 > 0 ? o.mu0 : 1.25 / norm2;
  res.mu0 = mu;
  const double mu_max = mu * o.mu_max_factor;
  // Every (n, n) buffer is allocated once; the passes write into them (rpca_ialm_passes.h).
  auto L = at::zeros_like(M), S = at::empty_like(M), S_next = at::empty_like(M), X = at::empty_like(M);
  at::Tensor U_prev, w_prev;  // the previous L's factors
  at::Tensor W;  // warm start: the previous iteration's leading Ritz vectors
  int64_t sv = std::max<int64_t>(1, std::min(o.rank_guess, n));
  // Lin et al. grow the predicted rank by 5% of n; capped at max(5, r) so that a big n does not make the block
  // (and each Krylov pass, n^2 p flops) far wider than the rank it has to hold.
  const int64_t five_percent = std::max<int64_t>(1, static_cast<int64_t>(std::lround(0.05 * n)));
  auto grow_for = [&](int64_t r) { return std::min(five_percent, std::max<int64_t>(5, r)); };
  Svt svt;
  double tau = 0;
  const BlockOperator applyX = [&](const at::Tensor& V) { return at::matmul(X, V); };

  sparse_step(M, Y, L, S, X, 1.0 / mu, res.lamb / mu);  // S = shrink(M + Y/mu - L), X = M + Y/mu - S
  for (int64_t it = 1; it <= o.max_iter; ++it) {
    tau = 1.0 / mu;
    // Partial SVT: a block of p >= predicted rank + 1 columns.
    int64_t p = std::min(sv + 1, n);
    bool done = o.exact_svt;
    for (int64_t attempt = 0; !done && attempt < kMaxAttempts; ++attempt) {
      const int64_t cols = std::min(p + kExtraColumns, n);
      if (2 * cols * (o.steps + 1) > n) break;
      const int64_t given = W.defined() ? std::min(W.size(1), cols - 1) : 0;
      auto fresh = randn_like_cpu(n, cols - given, X, gen);
      auto X0 = given ? at::cat({W.narrow(1, 0, given), fresh}, 1) : fresh;
      auto ritz = block_krylov_ritz(applyX, X0, o.steps, /*by_magnitude=*/true);
      ++res.svt_attempts;
      const int64_t m = ritz.values.size(0);
      const int64_t r = (ritz.values.abs() > tau).sum().item<int64_t>();
      W = ritz.vectors.narrow(1, 0, std::min(m, std::max(p, r + 1)));
      if (r + 1 > p) {  // the survivors fill the block: grow it
        p = std::min(r + grow_for(r) + 1, n);
        continue;
      }
      const double scale = ritz.values.abs().max().item<double>();
      if (r > 0 && ritz.residuals.narrow(0, 0, r).max().item<double>() > o.svt_tol * scale) continue;
      svt = from_eigenpairs(ritz.values, ritz.vectors, tau, r, 0.0, false);
      done = true;
      res.block = p;
    }
    if (!done || o.exact_svt) {
      svt = full_svt(X, tau);
      ++res.full_svt;
      W = at::Tensor();
    }
    // Lin et al.'s rank prediction for the next iteration.
    sv = svt.rank < sv ? svt.rank + 1 : std::min(svt.rank + grow_for(svt.rank), n);
    const double dL = factor_difference(U_prev, w_prev, svt.U, svt.w);
    U_prev = svt.U;
    w_prev = svt.w;
    if (svt.rank > 0) {
      at::mm_out(L, svt.U * svt.w.unsqueeze(0), svt.U.mT());
    } else {
      L.zero_();
    }
    // One pass: this iteration's residual and dual update, then the next iteration's sparse step and SVT argument
    // (into S_next and X; S keeps this iteration's S until the stopping test is passed).
    const double mu_next = std::min(mu * o.rho, mu_max);
    const double z2 = merged_step(M, L, S, Y, S_next, X, mu, 1.0 / mu_next, res.lamb / mu_next);
    res.primal = std::sqrt(z2) / fro;
    res.dual = mu * dL / fro;
    res.iterations = it;
    res.rank = svt.rank;
    res.mu = mu;
    res.converged = res.primal <= o.tol && res.dual <= o.tol;
    if (res.converged || it == o.max_iter) {
      // This iteration's SVT argument, for the certificate: X_k = M - S_k + Y_k / mu_k = L_k + Y_{k+1} / mu_k.
      at::add_out(X, L, Y, 1.0 / mu);
      break;
    }
    std::swap(S, S_next);
    mu = mu_next;
  }
  res.threshold = tau;
  // Certificate on the last SVT argument X.
  if (svt.full) {
    res.tail = svt.tail;
  } else {
    const auto U = svt.U;
    const BlockOperator deflated = [&](const at::Tensor& V) {
      auto PV = U.size(1) ? V - at::matmul(U, at::matmul(U.mT(), V)) : V;
      auto XPV = at::matmul(X, PV);
      return U.size(1) ? XPV - at::matmul(U, at::matmul(U.mT(), XPV)) : XPV;
    };
    if (small) {
      auto Id = at::eye(n, X.options());
      res.tail = at::linalg_eigvalsh(deflated(Id), "L").abs().max().item<double>();
    } else {
      res.tail = largest_magnitude(deflated, n, o.tail_block, o.tail_steps, X, gen, U);
    }
  }
  res.gap = (tau - res.tail) / tau;
  res.certified = res.converged && res.gap > 0;
  res.L = L.to(M_in.scalar_type());
  res.S = S.to(M_in.scalar_type());
  return res;
}

}  // namespace lowrankedit
