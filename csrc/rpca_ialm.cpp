// Robust PCA by the inexact ALM of Lin, Chen and Ma (Algorithm 5 of "The augmented Lagrange multiplier method for
// exact recovery of corrupted low-rank matrices", 2010) with a partial SVT (see the header).
//
// Iteration k (their order: the sparse step first), with over-relaxation alpha of the sparse part:
//   S = shrink(M - L + Y/mu, lamb/mu);  S^ = alpha S + (1 - alpha)(M - L);  L = SVT(M - S^ + Y/mu, 1/mu);
//   Y += mu (M - L - S^)  (= mu (X - L), X the SVT argument)
// from Y0 = M / max(||M||_2, max|M| / lamb), mu0 = 1.25 / ||M||_2, L = S = 0. The L-step is exact given its SVT; the
// S-step's optimality is off by mu ||L_k - L_{k-1}||, the dual residual (per entry: / n); both residuals <= tol stop
// it (the primal one relative to ||M||_F).
// Penalty: Lin et al.'s mu = min(rho mu, mu_max) every iteration up to mu_max = mu_max_factor mu0, then residual
// balancing (rpca::balanced_penalty, on the previous primal residual: the fused pass needs mu_next up front). Their
// rule alone (cap 1e7 mu0, alpha = 1) stalls on Jacobian Grams: on W+ Grams of our stylegan2 (n = 384, lamb = 1/60)
// it had not converged after 6000 iterations, with the dual residual stuck; growth to 1e5 mu0, then balancing, with
// alpha = 1.6 converged in 750 (the planted n = 512 problem of the benchmark: 40 iterations instead of 43).
//
// The SVT of the symmetric argument X keeps the eigenvalues with |lambda| > 1/mu. Only those are computed: block
// Krylov Rayleigh-Ritz (block_krylov.h) from the previous iteration's Ritz vectors plus random columns, on a block of
// p columns with p above the predicted rank; when the survivors fill the block it grows (Lin et al.'s rule: the
// predicted rank becomes r + 5% of n, here at most r + max(5, r)), when the survivors' Ritz pairs have not converged it
// restarts from them with one Krylov step more (up to kExtraSteps). A block too wide for a small Krylov space
// (p (steps + 1) > n / 2) takes the full eigendecomposition instead.
// Certificate: at the end, the largest |eigenvalue| of the last SVT argument outside the kept eigenvectors is
// estimated by block Lanczos on the deflated operator (I - U U^T) X (I - U U^T) (exact for small n); gap =
// (1/mu - tail) mu > 0 says no eigenvalue above the threshold was missed.
// Cost per iteration: the Krylov products X V (n^2 p each) and one fused pass over M, S, Y writing Y, the next S and
// X, L = U diag(w) U^T formed inside it (n^2 r); ||L_k - L_{k-1}||_F comes from the factors. On the CPU every pass
// and product touches only the upper tiles of these symmetric matrices (rpca_ialm_passes.h): five (n, n) float64
// buffers (M, Y, S, next S, X: 3.4 GB at n = 9216; L is written into the next-S buffer at the end), of which each
// iteration reads or writes about 6 halves in the pass and one half per product. Elsewhere (CUDA) the same
// iteration on full matrices from ATen ops, with an L buffer.
#include "rpca_ialm.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "block_krylov.h"
#include "rpca.h"
#include "rpca_ialm_passes.h"

namespace lowrankedit {

namespace {

constexpr int64_t kMaxAttempts = 30;  // partial-SVT passes per iteration before the full eigendecomposition
constexpr int64_t kExtraSteps = 2;    // Krylov steps added within an iteration (one per unconverged retry)

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

// X: its upper triangle is read (all that the CPU passes keep).
Svt full_svt(const at::Tensor& X, double tau) {
  auto [values, vectors] = at::linalg_eigh(X, "U");
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

// The (n, n) buffers and passes of the iteration. On the CPU only the upper tiles of the symmetric matrices are
// read and written, L is formed tile by tile from its factors (never stored), and X V is the symmetric tiled product
// (rpca_ialm_passes.h). Elsewhere the same arithmetic from in-place ATen ops on full buffers, L included. No (n, n)
// allocation per iteration either way.
class Workspace {
 public:
  Workspace(at::Tensor M, at::Tensor Y)
      : M_(std::move(M)), Y_(std::move(Y)), S_(at::empty_like(M_)), S_next_(at::empty_like(M_)),
        X_(at::empty_like(M_)), tiled_(M_.is_cpu()) {
    if (!tiled_) L_ = at::zeros_like(M_);
  }

  // S = shrink(M + Y inv_mu - L, thr), X = M + Y inv_mu - alpha S - (1 - alpha) (M - L), with L = 0.
  void sparse_step(double inv_mu, double thr, double alpha) {
    if (tiled_) return rpca_ialm_sparse_step_cpu(M_, Y_, S_, X_, inv_mu, thr, alpha);
    at::add_out(X_, M_, Y_, inv_mu);  // T
    at::softshrink_out(S_, X_, thr);
    X_.sub_(S_, alpha);
    if (alpha != 1.0) X_.sub_(M_, 1.0 - alpha);
  }

  // This iteration's residual and dual update with L = svt's, then the next iteration's sparse step and SVT argument
  // (into S_next and X; S keeps this iteration's S until the stopping test is passed). Returns ||M - L - S||_F^2.
  // The dual update reads the SVT argument: Y + mu (M - L - S^) = mu (X - L), so S^ is never stored.
  double merged_step(const Svt& svt, double mu, double inv_mu_next, double thr_next, double alpha) {
    const auto [A, Bt] = factors(svt);
    if (tiled_) {
      return rpca_ialm_merged_step_cpu(M_, S_, Y_, S_next_, X_, A, Bt, mu, inv_mu_next, thr_next, alpha, scratch_);
    }
    form_L(A, Bt);
    at::sub_out(S_next_, M_, L_).sub_(S_);  // Z
    const double z2 = S_next_.square().sum().item<double>();
    at::sub_out(Y_, X_, L_).mul_(mu);      // Y = mu (X - L)
    at::add_out(X_, M_, Y_, inv_mu_next);  // T
    at::sub_out(S_next_, X_, L_);
    at::softshrink_out(S_next_, S_next_, thr_next);
    X_.sub_(S_next_, alpha);
    if (alpha != 1.0) X_.sub_(M_, 1.0 - alpha).add_(L_, 1.0 - alpha);
    return z2;
  }

  void accept_sparse_step() { std::swap(S_, S_next_); }

  // X = L + Y inv_mu with L = svt's: the last SVT argument, M - S + Y_old / mu, for the certificate.
  void last_argument(const Svt& svt, double inv_mu) {
    const auto [A, Bt] = factors(svt);
    if (tiled_) return rpca_ialm_last_argument_cpu(Y_, X_, A, Bt, inv_mu, scratch_);
    form_L(A, Bt);
    at::add_out(X_, L_, Y_, inv_mu);
  }

  at::Tensor apply(const at::Tensor& V) {
    return tiled_ ? rpca_ialm_symmetric_apply_cpu(X_, V, scratch_) : at::matmul(X_, V);
  }
  // X with (at least) its upper triangle valid.
  const at::Tensor& X() const { return X_; }

  // The full L and S (the CPU's L written into the no longer needed S_next buffer).
  at::Tensor L(const Svt& svt) {
    const auto [A, Bt] = factors(svt);
    if (!tiled_) return L_;
    if (A.defined()) {
      at::mm_out(S_next_, A, Bt);
    } else {
      S_next_.zero_();
    }
    return S_next_;
  }
  at::Tensor S() {
    if (tiled_) rpca_ialm_mirror_upper_cpu(S_);
    return S_;
  }

 private:
  static std::pair<at::Tensor, at::Tensor> factors(const Svt& svt) {
    if (svt.rank == 0) return {at::Tensor(), at::Tensor()};
    return {(svt.U * svt.w.unsqueeze(0)).contiguous(), svt.U.mT().contiguous()};
  }
  void form_L(const at::Tensor& A, const at::Tensor& Bt) {
    if (A.defined()) {
      at::mm_out(L_, A, Bt);
    } else {
      L_.zero_();
    }
  }

  at::Tensor M_, Y_, S_, S_next_, X_, L_;
  at::Tensor scratch_;  // the CPU passes' small buffers, kept across iterations
  bool tiled_;
};

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
  // Every (n, n) buffer is allocated once; the passes write into them (Workspace).
  Workspace ws(M, M / std::max(norm2, norm_inf));
  double mu = o.mu0 > 0 ? o.mu0 : 1.25 / norm2;
  res.mu0 = mu;
  const double mu_max = mu * o.mu_max_factor;
  const double mu_floor = mu * rpca::kMuFloor, mu_ceiling = mu * rpca::kMuCeiling;
  bool balancing = false;   // past the growth phase
  double primal_prev = std::numeric_limits<double>::infinity();  // the last pass's primal residual (none yet: grow)
  at::Tensor U_prev, w_prev;  // the previous L's factors
  at::Tensor W;  // warm start: the previous iteration's leading Ritz vectors
  int64_t sv = std::max<int64_t>(1, std::min(o.rank_guess, n));
  // Lin et al. grow the predicted rank by 5% of n; capped at max(5, r) so that a big n does not make the block
  // (and each Krylov pass, n^2 p flops) far wider than the rank it has to hold.
  const int64_t five_percent = std::max<int64_t>(1, static_cast<int64_t>(std::lround(0.05 * n)));
  auto grow_for = [&](int64_t r) { return std::min(five_percent, std::max<int64_t>(5, r)); };
  Svt svt;
  double tau = 0;
  const BlockOperator applyX = [&](const at::Tensor& V) { return ws.apply(V); };

  ws.sparse_step(1.0 / mu, res.lamb / mu, o.alpha);  // S = shrink(M + Y/mu - L), X = M + Y/mu - S^
  for (int64_t it = 1; it <= o.max_iter; ++it) {
    tau = 1.0 / mu;
    // Partial SVT: a block of p >= predicted rank + 1 columns.
    int64_t p = std::min(sv + 1, n);
    bool done = o.exact_svt;
    int64_t slow = 0;  // retries for unconverged Ritz pairs (not for a block the survivors filled)
    for (int64_t attempt = 0; !done && attempt < kMaxAttempts; ++attempt) {
      const int64_t cols = std::min(p + o.oversample, n);
      // A retry means the Ritz pairs converge slowly (eigenvalues crowding the threshold, as on Jacobian Grams with a
      // smoothly decaying spectrum): a deeper Krylov space, not another restart of the same one. On W+ Grams
      // (n = 384) one step per retry took 25 attempts per iteration and 112 full eigendecompositions in 150
      // iterations; up to two more steps, 4 attempts and none. A grown block needs no deeper space.
      const int64_t steps = o.steps + std::min<int64_t>(slow, kExtraSteps);
      if (2 * cols * (steps + 1) > n) break;
      const int64_t given = W.defined() ? std::min(W.size(1), cols - 1) : 0;
      auto fresh = randn_like_cpu(n, cols - given, M, gen);
      auto X0 = given ? at::cat({W.narrow(1, 0, given), fresh}, 1) : fresh;
      auto ritz = block_krylov_ritz(applyX, X0, steps, /*by_magnitude=*/true);
      ++res.svt_attempts;
      const int64_t m = ritz.values.size(0);
      const int64_t r = (ritz.values.abs() > tau).sum().item<int64_t>();
      W = ritz.vectors.narrow(1, 0, std::min(m, std::max(p, r + 1)));
      if (r + 1 > p) {  // the survivors fill the block: grow it
        p = std::min(r + grow_for(r) + 1, n);
        continue;
      }
      const double scale = ritz.values.abs().max().item<double>();
      if (r > 0 && ritz.residuals.narrow(0, 0, r).max().item<double>() > o.svt_tol * scale) {
        ++slow;
        continue;
      }
      svt = from_eigenpairs(ritz.values, ritz.vectors, tau, r, 0.0, false);
      done = true;
      res.block = p;
    }
    if (!done || o.exact_svt) {
      svt = full_svt(ws.X(), tau);
      ++res.full_svt;
      W = at::Tensor();
    }
    // Lin et al.'s rank prediction for the next iteration.
    sv = svt.rank < sv ? svt.rank + 1 : std::min(svt.rank + grow_for(svt.rank), n);
    const double dL = factor_difference(U_prev, w_prev, svt.U, svt.w);
    U_prev = svt.U;
    w_prev = svt.w;
    res.dual = mu * dL / static_cast<double>(n);
    balancing = balancing || (o.balance && mu >= mu_max);
    const double mu_next = !balancing ? std::min(mu * o.rho, mu_max)
                                      : rpca::balanced_penalty(mu, primal_prev, res.dual, o.rho, mu_floor, mu_ceiling,
                                                               /*shrink=*/true);
    const double z2 = ws.merged_step(svt, mu, 1.0 / mu_next, res.lamb / mu_next, o.alpha);
    res.primal = std::sqrt(z2) / fro;
    primal_prev = res.primal;
    res.iterations = it;
    res.rank = svt.rank;
    res.mu = mu;
    res.converged = res.primal <= o.tol && res.dual <= o.tol;
    if (res.converged || it == o.max_iter) {
      // This iteration's SVT argument, for the certificate: X_k = M - S_k + Y_k / mu_k = L_k + Y_{k+1} / mu_k.
      ws.last_argument(svt, 1.0 / mu);
      break;
    }
    ws.accept_sparse_step();
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
      auto XPV = ws.apply(PV);
      return U.size(1) ? XPV - at::matmul(U, at::matmul(U.mT(), XPV)) : XPV;
    };
    if (small) {
      auto Id = at::eye(n, M.options());
      auto D = deflated(Id);
      res.tail = at::linalg_eigvalsh((D + D.mT()) * 0.5, "L").abs().max().item<double>();
    } else {
      res.tail = largest_magnitude(deflated, n, o.tail_block, o.tail_steps, M, gen, U);
    }
  }
  res.gap = (tau - res.tail) / tau;
  res.certified = res.converged && res.gap > 0;
  res.L = ws.L(svt).to(M_in.scalar_type());
  res.S = ws.S().to(M_in.scalar_type());
  return res;
}

}  // namespace lowrankedit
