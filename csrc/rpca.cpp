// The robust-PCA solver (see csrc/rpca.h). Per iteration and active matrix: L = SVT(A, 1/mu) (exact, or the
// warm-started Krylov route), then the fused rpca_step kernel (sparse shrinkage, multiplier update, next SVT
// argument, both residual norms). The bookkeeping (penalty schedule, stopping) is a few host scalars per matrix.
#include "rpca.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "rpca_step.h"
#include "singular_value_threshold.h"

namespace lowrankedit {
namespace rpca {
namespace {

at::Tensor step(const at::Tensor& M, const at::Tensor& L, at::Tensor& S, at::Tensor& Y, at::Tensor& A,
                const at::Tensor& mu, const at::Tensor& lamb, const at::Tensor& mu_next, const at::Tensor& active,
                const at::Tensor& alpha) {
#ifdef WITH_CUDA
  if (M.is_cuda()) return rpca_step_cuda(M, L, S, Y, A, mu, lamb, mu_next, active, alpha);
#endif
  return rpca_step_cpu(M, L, S, Y, A, mu, lamb, mu_next, active, alpha);
}

at::Tensor host(const std::vector<double>& v, at::Device dev) { return at::tensor(v, at::kDouble).to(dev); }

std::vector<double> to_host(const at::Tensor& t) {
  const auto c = t.to(at::kDouble).cpu().contiguous();
  return std::vector<double>(c.const_data_ptr<double>(), c.const_data_ptr<double>() + c.numel());
}

// The solver's state: matrices on the device, per-matrix bookkeeping on the host.
struct State {
  at::Tensor M, L, S, Y, A;  // (B, n, n); M is the scaled input M / s
  at::Tensor lamb, alpha;    // (B,) float64 on the device
  at::Tensor W;              // the Krylov warm start (undefined until the first Krylov call)
  std::vector<double> mu, mu_min, mu_max, alpha_h, fro, primal, dual;
  std::vector<int64_t> iterations, rank;
  std::vector<char> active, balance, zero;
  double grow = 1.0;
  bool stop_dual = true, sym = false;
};

// Up to `budget` iterations with per-matrix stopping (primal <= tol and, with stop_dual, dual <= tol).
// grow: mu *= grow while the previous primal residual exceeds kEta x the dual one (1: fixed mu), and where balance[b]
// also mu /= grow while the dual one exceeds kEta x the primal; kept in [mu_min, mu_max].
// krylov_steps: 0 = exact SVT every iteration, k > 0 = the Krylov route with k block steps (symmetric only).
void run_chunk(State& st, int64_t budget, int64_t krylov_steps, double tol) {
  const int64_t B = st.M.size(0), n = st.M.size(1);
  const auto dev = st.M.device();
  const auto Mf = st.M.view({B, n * n});
  auto Lf = st.L.view({B, n * n}), Sf = st.S.view({B, n * n}), Yf = st.Y.view({B, n * n}),
       Af = st.A.view({B, n * n});
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);  // a fresh stream per chunk (the iterates depend on it)
  for (int64_t k = 0; k < budget; ++k) {
    std::vector<int64_t> idx;
    for (int64_t b = 0; b < B; ++b) {
      if (st.active[b]) idx.push_back(b);
    }
    if (idx.empty()) break;
    const bool all = static_cast<int64_t>(idx.size()) == B;
    const auto idx_t = all ? at::Tensor() : at::tensor(idx, at::kLong).to(dev);
    auto sub = [&](const at::Tensor& t) { return all ? t : t.index_select(0, idx_t); };
    const auto mu_t = host(st.mu, dev);
    const auto tau = sub(mu_t).reciprocal();
    at::Tensor L_new, r;
    if (krylov_steps > 0) {
      auto [Lk, rk, W_next] = svt::krylov(sub(st.A), tau, st.W.defined() ? sub(st.W) : at::Tensor(), krylov_steps,
                                          gen);
      L_new = Lk;
      r = rk;
      if (all) {
        st.W = W_next;
      } else {  // rows of finished matrices are never read again
        st.W = at::zeros({B, n, W_next.size(2)}, W_next.options()).index_copy_(0, idx_t, W_next);
      }
    } else {
      std::tie(L_new, r) = svt::exact(sub(st.A), tau, st.sym);
    }
    if (all) {
      st.L.copy_(L_new);
    } else {
      st.L.index_copy_(0, idx_t, L_new);
    }
    const auto r_cpu = r.cpu();
    for (size_t j = 0; j < idx.size(); ++j) st.rank[idx[j]] = r_cpu[j].item<int64_t>();
    // The penalty for this pass is decided on the previous residuals (the fused pass needs mu_next up front).
    auto mu_next = st.mu;
    for (int64_t b : idx) {
      if (st.grow <= 1 || st.iterations[b] == 0) continue;
      mu_next[b] = balanced_penalty(mu_next[b], st.primal[b], st.dual[b], st.grow, st.mu_min[b], st.mu_max[b],
                                    st.balance[b]);
    }
    auto act = at::empty({B}, at::kBool);
    for (int64_t b = 0; b < B; ++b) act.data_ptr<bool>()[b] = st.active[b];
    const auto norms = step(Mf, Lf, Sf, Yf, Af, mu_t, st.lamb, host(mu_next, dev), act.to(dev), st.alpha).cpu();
    const double* nm = norms.const_data_ptr<double>();
    for (int64_t b : idx) {
      st.primal[b] = std::sqrt(nm[2 * b]) / st.fro[b];
      // The dual residual mu (S_k - S_{k-1}) lives in the multiplier's units, which carry no scale (|Y_ij| <= lamb at
      // the optimum), so it is measured per entry (RMS), not relative to ||M||: mu S is the same for M and c M, and
      // the rule no longer depends on how M was scaled (relative to ||M / max|M| ||_F it took 102 instead of 64
      // iterations on a planted n = 512 problem, with the same error to the planted L).
      st.dual[b] = st.mu[b] * std::sqrt(nm[2 * b + 1]) / static_cast<double>(n);
      st.iterations[b] += 1;
      if (st.primal[b] <= tol && (!st.stop_dual || st.dual[b] <= tol)) st.active[b] = false;
    }
    st.mu = mu_next;
  }
}

bool any(const std::vector<char>& v) { return std::any_of(v.begin(), v.end(), [](char c) { return c != 0; }); }

template <typename T>
at::Tensor cpu_tensor(const std::vector<T>& v, at::ScalarType t) {
  auto out = at::empty({static_cast<int64_t>(v.size())}, t);
  for (size_t i = 0; i < v.size(); ++i) {
    if constexpr (std::is_same_v<T, char>) {
      out.data_ptr<bool>()[i] = v[i] != 0;
    } else {
      out.data_ptr<T>()[i] = v[i];
    }
  }
  return out;
}

}  // namespace

Result solve(const at::Tensor& M, const at::Tensor& lamb, const at::Tensor& mu_given, const Options& opt) {
  const int64_t B = M.size(0), n = M.size(1);
  const auto dev = M.device();
  State st;
  at::Tensor Mb = M;
  if (opt.symmetric == -1) {
    // Symmetric to rounding counts (exact equality sent GEMM-made Grams down the full-SVD route: 61 vs 5 ms per
    // iteration at n = 512); such a matrix is replaced by its symmetric part, far below the solver's tolerance.
    std::tie(Mb, st.sym) = svt::symmetric_to_rounding(M);
  } else {
    st.sym = opt.symmetric == 1;
  }
  // Scale invariance: solve for M / s with s = max |M| per matrix, so every rule below (defaults, residuals, the
  // penalty schedule, tolerances) sees the same matrix, max |M / s| = 1, whatever the units of M. For c a power of
  // two, (c M) / (c s) is bit for bit M / s, so rpca(c M) = c rpca(M) exactly, iterate for iterate; otherwise the
  // scaled matrices differ by one rounding. (A power-of-two s would make the division itself exact, but leaves a
  // factor in [1, 2) that the dual residual, mu ||D|| / ||M||, is not invariant to: seen as 32 vs 33 iterations.)
  // Denormal input is divided up like any other; an all-zero matrix is solved by L = S = 0.
  const auto amax = to_host(Mb.abs().amax({1, 2}));
  std::vector<double> s(B);
  st.zero.assign(B, 0);
  for (int64_t b = 0; b < B; ++b) {
    st.zero[b] = amax[b] == 0;
    s[b] = amax[b] > 0 ? amax[b] : 1.0;
  }
  const auto s_dev = host(s, dev).view({B, 1, 1});
  st.M = (Mb / s_dev.to(Mb.scalar_type())).contiguous();
  const auto M64 = st.M.to(at::kDouble);
  st.fro = to_host(at::linalg_matrix_norm(M64, "fro"));
  for (int64_t b = 0; b < B; ++b) {
    if (st.zero[b]) st.fro[b] = 1.0;
  }
  st.lamb = lamb;
  std::vector<double> mu(B);
  if (mu_given.defined()) {  // mu is in M's units: M / s needs mu s
    mu = to_host(mu_given);
    for (int64_t b = 0; b < B; ++b) mu[b] *= s[b];
  }
  st.balance.assign(B, 0);
  int64_t krylov = 0;
  if (opt.official) {
    if (!mu_given.defined()) {  // n^2 / (4 ||M||_1), the induced 1-norm (largest absolute column sum)
      const auto norm1 = to_host(at::linalg_matrix_norm(M64, 1));
      for (int64_t b = 0; b < B; ++b) mu[b] = double(n * n) / (4 * (st.zero[b] ? 1.0 : norm1[b]));
    }
    st.mu_min = st.mu_max = mu;
    st.grow = 1.0;
    st.alpha_h.assign(B, 1.0);
    st.stop_dual = false;  // the official rule: primal residual only
  } else {
    if (!mu_given.defined()) {
      // kMuScale / ||M||_2 (threshold ||M||_2 / kMuScale) suits Grams with a decaying spectrum; where that threshold
      // would keep over a quarter of the spectrum (a noise floor, as in planted low rank + sparse), start from Lin
      // et al.'s 1.25 / ||M||_2, balance the residuals both ways and take plain steps.
      const auto spectrum = st.sym ? at::linalg_eigvalsh(M64, "L").abs() : at::linalg_svdvals(M64);
      const auto norm2 = to_host(std::get<0>(spectrum.max(-1)));
      const auto spec_t = spectrum.to(at::kDouble).cpu().contiguous();
      const auto spec = spec_t.accessor<double, 2>();
      for (int64_t b = 0; b < B; ++b) {
        const double nb = st.zero[b] ? 1.0 : norm2[b];
        int64_t above = 0;
        for (int64_t i = 0; i < n; ++i) above += spec[b][i] > nb / kMuScale;
        st.balance[b] = above > n / 4;
        mu[b] = st.balance[b] ? 1.25 / nb : kMuScale / nb;
      }
    }
    st.mu_min = st.mu_max = mu;
    for (int64_t b = 0; b < B; ++b) {
      st.mu_min[b] = mu[b] * kMuFloor;
      st.mu_max[b] = mu[b] * kMuCeiling;
    }
    st.grow = opt.rho;
    st.alpha_h.resize(B);
    for (int64_t b = 0; b < B; ++b) st.alpha_h[b] = st.balance[b] ? 1.0 : opt.alpha;
    krylov = st.sym ? kKrylovSteps : 0;  // the Krylov route needs symmetric matrices (full eigh when n is small)
  }
  st.mu = mu;
  st.alpha = host(st.alpha_h, dev);
  st.L = at::zeros_like(st.M);
  st.S = at::zeros_like(st.M);
  st.Y = at::zeros_like(st.M);
  st.A = st.M.clone();  // the first SVT argument M - S - Y/mu with S = Y = 0
  st.iterations.assign(B, 0);
  st.rank.assign(B, 0);
  st.primal.assign(B, 0.0);
  st.dual.assign(B, 0.0);
  st.active.resize(B);
  for (int64_t b = 0; b < B; ++b) st.active[b] = !st.zero[b];  // an all-zero M is solved by L = S = 0 at once

  int64_t done = 0;
  std::vector<double> best(B, std::numeric_limits<double>::infinity());  // the smallest max(primal, dual) seen
  std::vector<int64_t> since(B, 0);                                      // chunks since it last halved
  while (done < opt.max_iter && any(st.active)) {
    const int64_t budget = std::min(kChunk, opt.max_iter - done);
    run_chunk(st, budget, krylov, opt.tol);
    done += budget;
    // Stall: over-relaxation can stall near a degenerate optimum (seen with L = 0 optimal: the primal residual stuck
    // at 1e-7 for 20,000 iterations); a matrix whose residual has not halved in kStall chunks goes on with plain
    // steps (alpha = 1), which converge there.
    bool changed = false;
    for (int64_t b = 0; b < B; ++b) {
      const double worst = std::max(st.primal[b], st.dual[b]);
      if (worst < 0.5 * best[b]) {
        best[b] = worst;
        since[b] = 0;
      } else {
        since[b] += 1;
      }
      if (st.active[b] && since[b] >= kStall && st.alpha_h[b] != 1.0) {
        st.alpha_h[b] = 1.0;
        since[b] = 0;
        changed = true;
      }
    }
    if (changed) st.alpha = host(st.alpha_h, dev);
    if (krylov && !any(st.active)) {
      // Certification: the matrices that stopped on Krylov iterates go on with the exact SVT until the criterion
      // holds again (usually one iteration), so the reported residuals are exact ones.
      for (int64_t b = 0; b < B; ++b) {
        st.active[b] = st.iterations[b] < opt.max_iter && !st.zero[b] && st.iterations[b] > 0;
      }
      krylov = 0;
    }
    if (opt.progress) {
      Progress p{*std::max_element(st.iterations.begin(), st.iterations.end()),
                 *std::max_element(st.primal.begin(), st.primal.end()),
                 *std::max_element(st.dual.begin(), st.dual.end()),
                 static_cast<int64_t>(std::count_if(st.active.begin(), st.active.end(), [](char c) { return c; }))};
      opt.progress(p);
    }
  }
  Result res;
  std::vector<char> converged(B);
  std::vector<double> mu_out(B);
  for (int64_t b = 0; b < B; ++b) {
    converged[b] = st.zero[b] || (st.primal[b] <= opt.tol && (!st.stop_dual || st.dual[b] <= opt.tol) &&
                                  st.iterations[b] > 0);
    mu_out[b] = st.mu[b] / s[b];
  }
  const auto s_out = s_dev.to(st.M.scalar_type());
  res.L = st.L * s_out;
  res.S = st.S * s_out;
  res.iterations = cpu_tensor(st.iterations, at::kLong);
  res.converged = cpu_tensor(converged, at::kBool);
  res.primal = cpu_tensor(st.primal, at::kDouble);
  res.dual = cpu_tensor(st.dual, at::kDouble);
  res.rank = cpu_tensor(st.rank, at::kLong);
  res.mu = cpu_tensor(mu_out, at::kDouble);
  res.symmetric = st.sym;
  return res;
}

}  // namespace rpca
}  // namespace lowrankedit
