// Public entry of rpca_ialm: validate once, then the composed-ATen solver in csrc/ (any device).
#include <torch/extension.h>

#include "common/checks.h"
#include "rpca_ialm.h"

namespace {

// M: (n, n) symmetric -> (L (n, n), S (n, n), info dict)
pybind11::tuple rpca_ialm_entry(const at::Tensor& M, double lamb, double tol, int64_t max_iter, double mu0,
                                double rho, double mu_max_factor, bool exact_svt, int64_t rank_guess, int64_t steps,
                                double svt_tol, int64_t tail_block, int64_t tail_steps, int64_t seed) {
  constexpr const char* op = "rpca_ialm";
  TORCH_CHECK(M.defined(), op, ": expected M to be a tensor, got an undefined tensor");
  TORCH_CHECK(M.scalar_type() == at::kFloat || M.scalar_type() == at::kDouble, op,
              ": expected M of dtype float32 or float64, got ", M.scalar_type());
  lowrankedit::check_dim(op, "M", M, 2, "(n, n)");
  TORCH_CHECK(M.size(0) == M.size(1) && M.size(0) >= 1, op, ": expected M of shape (n, n), n >= 1, got ",
              M.sizes());
  lowrankedit::check_backend(op, M);
  TORCH_CHECK(at::isfinite(M).all().item<bool>(), op, ": expected M to be finite, got NaN or Inf entries");
  auto positive_or_default = [&](const char* name, double v) {
    TORCH_CHECK(std::isfinite(v) && v >= 0, op, ": expected ", name, " > 0 (or 0 for the default), got ", v);
  };
  positive_or_default("lamb", lamb);
  positive_or_default("mu0", mu0);
  TORCH_CHECK(std::isfinite(tol) && tol >= 0, op, ": expected tol >= 0 and finite, got ", tol);
  TORCH_CHECK(max_iter >= 1, op, ": expected max_iter >= 1, got ", max_iter);
  TORCH_CHECK(std::isfinite(rho) && rho >= 1, op, ": expected rho >= 1, got ", rho);
  TORCH_CHECK(std::isfinite(mu_max_factor) && mu_max_factor >= 1, op, ": expected mu_max_factor >= 1, got ",
              mu_max_factor);
  TORCH_CHECK(rank_guess >= 1, op, ": expected rank_guess >= 1, got ", rank_guess);
  TORCH_CHECK(steps >= 1, op, ": expected steps >= 1, got ", steps);
  TORCH_CHECK(std::isfinite(svt_tol) && svt_tol > 0, op, ": expected svt_tol > 0, got ", svt_tol);
  TORCH_CHECK(tail_block >= 1 && tail_steps >= 1, op, ": expected tail_block >= 1 and tail_steps >= 1, got ",
              tail_block, " and ", tail_steps);
  TORCH_CHECK(seed >= 0, op, ": expected seed >= 0, got ", seed);
  lowrankedit::RpcaIalmOptions o;
  o.lamb = lamb;
  o.tol = tol;
  o.max_iter = max_iter;
  o.mu0 = mu0;
  o.rho = rho;
  o.mu_max_factor = mu_max_factor;
  o.exact_svt = exact_svt;
  o.rank_guess = rank_guess;
  o.steps = steps;
  o.svt_tol = svt_tol;
  o.tail_block = tail_block;
  o.tail_steps = tail_steps;
  o.seed = static_cast<uint64_t>(seed);
  const auto r = lowrankedit::rpca_ialm(M, o);
  pybind11::dict info;
  info["iterations"] = r.iterations;
  info["converged"] = r.converged;
  info["primal_residual"] = r.primal;
  info["dual_residual"] = r.dual;
  info["rank"] = r.rank;
  info["mu"] = r.mu;
  info["mu0"] = r.mu0;
  info["lamb"] = r.lamb;
  info["threshold"] = r.threshold;
  info["tail"] = r.tail;
  info["gap"] = r.gap;
  info["certified"] = r.certified;
  info["block"] = r.block;
  info["svt_attempts"] = r.svt_attempts;
  info["full_svt"] = r.full_svt;
  return pybind11::make_tuple(r.L, r.S, info);
}

}  // namespace

void bind_rpca_ialm(pybind11::module_& m) {
  m.def("rpca_ialm", &rpca_ialm_entry,
        "M (n, n) symmetric -> (L, S, info): principal component pursuit by Lin et al.'s inexact ALM with a "
        "partial, rank-adaptive SVT and a spectral-gap certificate",
        pybind11::arg("M"), pybind11::arg("lamb"), pybind11::arg("tol"), pybind11::arg("max_iter"),
        pybind11::arg("mu0"), pybind11::arg("rho"), pybind11::arg("mu_max_factor"), pybind11::arg("exact_svt"),
        pybind11::arg("rank_guess"), pybind11::arg("steps"), pybind11::arg("svt_tol"), pybind11::arg("tail_block"),
        pybind11::arg("tail_steps"), pybind11::arg("seed"));
}
