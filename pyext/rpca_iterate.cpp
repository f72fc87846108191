// Public entry of rpca_iterate: the robust-PCA iteration loop in C++ (ops.rpca drives it in chunks, for its
// progress bar). Per iteration and active matrix: L = SVT(A, 1/mu) (exact, or the warm-started Krylov route), then
// the fused rpca_step kernel (sparse shrinkage, multiplier update, next SVT argument, both residual norms). A Python
// loop spent more time in bookkeeping than in the n = 100 eigensolver; here the bookkeeping is a few host scalars.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/extension.h>

#include <cmath>
#include <vector>

#include "common/checks.h"
#include "rpca_step.h"
#include "singular_value_threshold.h"

namespace {

at::Tensor step(const at::Tensor& M, const at::Tensor& L, at::Tensor& S, at::Tensor& Y, at::Tensor& A,
                const at::Tensor& mu, const at::Tensor& lamb, const at::Tensor& mu_next, const at::Tensor& active,
                const at::Tensor& alpha) {
#ifdef WITH_CUDA
  if (M.is_cuda()) return rpca_step_cuda(M, L, S, Y, A, mu, lamb, mu_next, active, alpha);
#endif
  return rpca_step_cpu(M, L, S, Y, A, mu, lamb, mu_next, active, alpha);
}

}  // namespace

// M, L, S, Y, A: (B, n, n) contiguous, one dtype and device (L, S, Y, A updated in place; A = M - S - Y/mu is the
// next SVT argument); mu: (B,) f64 on the device (updated); lamb, alpha, mu_max: (B,) f64 on the device;
// fro: (B,) f64 CPU (||M||_F, the residual scale); active, iterations, primal, dual, rank: (B,) CPU, updated.
// grow: mu *= grow while the previous primal residual exceeds eta x the dual one (1: fixed mu), and where
//   balance[b] (CPU bool) also mu /= grow while the dual one exceeds eta x the primal; kept in [mu_min, mu_max];
// stop_dual: stop on primal AND dual residual <= tol (else primal only, the official rule);
// krylov_steps: 0 = exact SVT every iteration, k > 0 = Krylov route with k block steps (symmetric only);
// W: the Krylov warm start (or None). Runs at most `iters` iterations; returns the next W (or None).
c10::optional<at::Tensor> rpca_iterate(const at::Tensor& M, at::Tensor L, at::Tensor S, at::Tensor Y, at::Tensor A,
                                       at::Tensor mu, const at::Tensor& lamb, const at::Tensor& alpha,
                                       const at::Tensor& mu_min, const at::Tensor& mu_max,
                                       const at::Tensor& balance, const at::Tensor& fro, at::Tensor active,
                                       at::Tensor iterations, at::Tensor primal, at::Tensor dual, at::Tensor rank,
                                       double grow, double eta, bool stop_dual, double tol, int64_t iters,
                                       int64_t symmetric, int64_t krylov_steps, c10::optional<at::Tensor> W,
                                       int64_t seed) {
  constexpr const char* op = "rpca_iterate";
  TORCH_CHECK(M.dim() == 3 && M.size(1) == M.size(2) && M.is_contiguous(), op,
              ": expected M to be a contiguous (B, n, n) tensor, got ", M.sizes());
  lowrankedit::check_backend(op, M);
  const int64_t B = M.size(0), n = M.size(1);
  for (const auto* t : {&L, &S, &Y, &A}) {
    TORCH_CHECK(t->sizes() == M.sizes() && t->is_contiguous() && t->scalar_type() == M.scalar_type() &&
                    t->device() == M.device(),
                op, ": expected the state L, S, Y, A to be contiguous like M ", M.sizes());
  }
  for (const at::Tensor* t : std::initializer_list<const at::Tensor*>{&mu, &lamb, &alpha, &mu_min, &mu_max}) {
    TORCH_CHECK(t->scalar_type() == at::kDouble && t->dim() == 1 && t->size(0) == B && t->is_contiguous() &&
                    t->device() == M.device(),
                op, ": expected mu, lamb, alpha, mu_min, mu_max to be contiguous float64 (", B, ") on M's device");
  }
  TORCH_CHECK(balance.scalar_type() == at::kBool && balance.numel() == B && !balance.is_cuda(), op,
              ": expected balance to be a CPU bool tensor of shape (", B, ")");
  TORCH_CHECK(!fro.is_cuda() && !active.is_cuda() && !iterations.is_cuda() && !primal.is_cuda() &&
                  !dual.is_cuda() && !rank.is_cuda(),
              op, ": expected the bookkeeping tensors on the CPU");
  TORCH_CHECK(krylov_steps == 0 || symmetric == 1, op, ": the Krylov route needs symmetric matrices");
  const auto Mf = M.view({B, n * n});
  auto Lf = L.view({B, n * n}), Sf = S.view({B, n * n}), Yf = Y.view({B, n * n}), Af = A.view({B, n * n});
  bool* act = active.data_ptr<bool>();
  int64_t* it = iterations.data_ptr<int64_t>();
  double* pr = primal.data_ptr<double>();
  double* du = dual.data_ptr<double>();
  int64_t* rk = rank.data_ptr<int64_t>();
  const double* fr = fro.const_data_ptr<double>();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
  at::Tensor Wk = W.has_value() ? *W : at::Tensor();
  const auto dev = M.device();

  for (int64_t k = 0; k < iters; ++k) {
    std::vector<int64_t> idx;
    for (int64_t b = 0; b < B; ++b) {
      if (act[b]) idx.push_back(b);
    }
    if (idx.empty()) break;
    const bool all = static_cast<int64_t>(idx.size()) == B;
    const auto idx_t = all ? at::Tensor() : at::tensor(idx, at::kLong).to(dev);
    auto sub = [&](const at::Tensor& t) { return all ? t : t.index_select(0, idx_t); };
    const auto tau = sub(mu).reciprocal();
    at::Tensor L_new, r;
    if (krylov_steps > 0) {
      at::Tensor W_sub = Wk.defined() ? sub(Wk) : at::Tensor();
      auto res = svt_krylov(sub(A), tau, W_sub, krylov_steps, gen);
      L_new = std::get<0>(res);
      r = std::get<1>(res);
      const auto& W_next = std::get<2>(res);
      if (all) {
        Wk = W_next;
      } else {  // rows of finished matrices are never read again
        auto Wfull = at::zeros({B, n, W_next.size(2)}, W_next.options());
        Wk = Wfull.index_copy_(0, idx_t, W_next);
      }
    } else {
      std::tie(L_new, r) = singular_value_threshold(sub(A), tau, symmetric, false);
    }
    if (all) {
      L.copy_(L_new);
      rank.copy_(r.cpu());
    } else {
      L.index_copy_(0, idx_t, L_new);
      const auto r_cpu = r.cpu();
      for (size_t j = 0; j < idx.size(); ++j) rk[idx[j]] = r_cpu[j].item<int64_t>();
    }
    // The penalty for this pass is decided on the previous residuals (the fused pass needs mu_next up front).
    auto mu_cpu = mu.cpu();
    auto mu_next_cpu = mu_cpu.clone();
    const auto mu_max_cpu = mu_max.cpu();
    const auto mu_min_cpu = mu_min.cpu();
    double* mn = mu_next_cpu.data_ptr<double>();
    const bool* both = balance.const_data_ptr<bool>();
    for (int64_t b : idx) {
      if (grow <= 1 || it[b] == 0) continue;
      if (pr[b] > eta * du[b]) {
        mn[b] = std::min(mn[b] * grow, mu_max_cpu.const_data_ptr<double>()[b]);
      } else if (both[b] && du[b] > eta * pr[b]) {
        mn[b] = std::max(mn[b] / grow, mu_min_cpu.const_data_ptr<double>()[b]);
      }
    }
    const auto mu_next = mu_next_cpu.to(dev);
    const auto norms = step(Mf, Lf, Sf, Yf, Af, mu, lamb, mu_next, active.to(dev), alpha).cpu();
    const double* nm = norms.const_data_ptr<double>();
    const double* mc = mu_cpu.const_data_ptr<double>();
    for (int64_t b : idx) {
      pr[b] = std::sqrt(nm[2 * b]) / fr[b];
      du[b] = mc[b] * std::sqrt(nm[2 * b + 1]) / fr[b];
      it[b] += 1;
      if (pr[b] <= tol && (!stop_dual || du[b] <= tol)) act[b] = false;
    }
    mu.copy_(mu_next);
  }
  return Wk.defined() ? c10::optional<at::Tensor>(Wk) : c10::nullopt;
}

void bind_rpca_iterate(pybind11::module_& m) {
  m.def("rpca_iterate", &rpca_iterate,
        "Run up to `iters` robust-PCA iterations in place (SVT, then the fused rpca_step), with per-matrix "
        "stopping; returns the Krylov warm start",
        pybind11::arg("M"), pybind11::arg("L"), pybind11::arg("S"), pybind11::arg("Y"), pybind11::arg("A"),
        pybind11::arg("mu"), pybind11::arg("lamb"), pybind11::arg("alpha"), pybind11::arg("mu_min"),
        pybind11::arg("mu_max"), pybind11::arg("balance"),
        pybind11::arg("fro"), pybind11::arg("active"), pybind11::arg("iterations"), pybind11::arg("primal"),
        pybind11::arg("dual"), pybind11::arg("rank"), pybind11::arg("grow"), pybind11::arg("eta"),
        pybind11::arg("stop_dual"), pybind11::arg("tol"), pybind11::arg("iters"), pybind11::arg("symmetric"),
        pybind11::arg("krylov_steps"), pybind11::arg("W") = pybind11::none(), pybind11::arg("seed") = 0);
}
