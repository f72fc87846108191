// Entry of rpca_ialm: validate once (dtype, shape, finite M, the iteration's parameters), then the composed-ATen
// solver of csrc/rpca_ialm.cpp (the same code on every device).
#include <torch/library.h>

#include <cmath>

#include "common/checks.h"
#include "registration.h"
#include "rpca_ialm.h"
#include "singular_value_threshold.h"

namespace {

using Out = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                       at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                       at::Tensor>;

// M: (n, n) symmetric -> (L, S (n, n), and 0-dim CPU statistics, see the schema and csrc/rpca_ialm.h)
Out rpca_ialm(const at::Tensor& M, double lamb, double tol, int64_t max_iter, double mu0, double rho,
              double mu_max_factor, bool exact_svt, int64_t rank_guess, int64_t steps, double svt_tol,
              int64_t tail_block, int64_t tail_steps, int64_t seed, bool balance, double alpha,
              int64_t oversample) {
  constexpr const char* op = "rpca_ialm";
  TORCH_CHECK_TYPE(M.scalar_type() == at::kFloat || M.scalar_type() == at::kDouble, op,
                   ": expected M of dtype float32 or float64, got ", M.scalar_type());
  lowrankedit::check_dim(op, "M", M, 2, "(n, n)");
  TORCH_CHECK_VALUE(M.size(0) == M.size(1) && M.size(0) >= 1, op, ": expected M of shape (n, n), n >= 1, got ",
                    M.sizes());
  lowrankedit::check_backend(op, M);
  const auto positive_or_default = [&](const char* name, double v) {
    TORCH_CHECK_VALUE(std::isfinite(v) && v >= 0, op, ": expected ", name, " > 0 (or 0 for the default), got ", v);
  };
  positive_or_default("lamb", lamb);
  positive_or_default("mu0", mu0);
  TORCH_CHECK_VALUE(std::isfinite(tol) && tol >= 0, op, ": expected tol >= 0 and finite, got ", tol);
  TORCH_CHECK_VALUE(max_iter >= 1, op, ": expected max_iter >= 1, got ", max_iter);
  TORCH_CHECK_VALUE(std::isfinite(rho) && rho >= 1, op, ": expected rho >= 1, got ", rho);
  TORCH_CHECK_VALUE(std::isfinite(mu_max_factor) && mu_max_factor >= 1, op, ": expected mu_max_factor >= 1, got ",
                    mu_max_factor);
  TORCH_CHECK_VALUE(std::isfinite(alpha) && alpha > 0 && alpha < 2, op, ": expected alpha in (0, 2), got ", alpha);
  TORCH_CHECK_VALUE(rank_guess >= 1, op, ": expected rank_guess >= 1, got ", rank_guess);
  TORCH_CHECK_VALUE(steps >= 1, op, ": expected steps >= 1, got ", steps);
  TORCH_CHECK_VALUE(oversample >= 0, op, ": expected oversample >= 0, got ", oversample);
  TORCH_CHECK_VALUE(std::isfinite(svt_tol) && svt_tol > 0, op, ": expected svt_tol > 0, got ", svt_tol);
  TORCH_CHECK_VALUE(tail_block >= 1 && tail_steps >= 1, op, ": expected tail_block >= 1 and tail_steps >= 1, got ",
                    tail_block, " and ", tail_steps);
  TORCH_CHECK_VALUE(seed >= 0, op, ": expected seed >= 0, got ", seed);
  lowrankedit::check_finite(op, "M", M);
  // The same symmetry rule as rpca's and singular_value_threshold's automatic eigh route; its symmetric part is
  // solved for.
  const auto [Ms, symmetric] = lowrankedit::svt::symmetric_to_rounding(M.unsqueeze(0));
  if (!symmetric) {
    const double asym = (M - M.mT()).abs().amax().item<double>(), big = M.abs().amax().item<double>();
    TORCH_CHECK_VALUE(false, op, ": expected a symmetric M (to rounding: max |M - M^T| <= 1000 eps max |M|), got ",
                      "max |M - M^T| = ", asym, " with max |M| = ", big,
                      "; use lowrankedit.ops.rpca (method='ialm') for general matrices");
  }
  lowrankedit::RpcaIalmOptions o;
  o.lamb = lamb;
  o.tol = tol;
  o.max_iter = max_iter;
  o.mu0 = mu0;
  o.rho = rho;
  o.mu_max_factor = mu_max_factor;
  o.balance = balance;
  o.alpha = alpha;
  o.oversample = oversample;
  o.exact_svt = exact_svt;
  o.rank_guess = rank_guess;
  o.steps = steps;
  o.svt_tol = svt_tol;
  o.tail_block = tail_block;
  o.tail_steps = tail_steps;
  o.seed = static_cast<uint64_t>(seed);
  const auto r = lowrankedit::rpca_ialm(Ms.squeeze(0), o);
  const auto cpu = at::TensorOptions().device(at::kCPU);
  const auto i64 = [&](int64_t v) { return at::scalar_tensor(v, cpu.dtype(at::kLong)); };
  const auto f64 = [&](double v) { return at::scalar_tensor(v, cpu.dtype(at::kDouble)); };
  const auto b = [&](bool v) { return at::scalar_tensor(v, cpu.dtype(at::kBool)); };
  return {r.L.contiguous(), r.S.contiguous(), i64(r.iterations), b(r.converged), f64(r.primal), f64(r.dual),
          i64(r.rank), f64(r.mu), f64(r.mu0), f64(r.lamb), f64(r.threshold), f64(r.tail), f64(r.gap), b(r.certified),
          i64(r.block), i64(r.svt_attempts), i64(r.full_svt)};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(lowrankedit, m) {
  m.def("rpca_ialm(Tensor M, float lamb=0., float tol=1e-7, int max_iter=1000, float mu0=0., float rho=1.5, "
        "float mu_max_factor=1e5, bool exact_svt=False, int rank_guess=10, int steps=1, float svt_tol=1e-10, "
        "int tail_block=8, int tail_steps=12, int seed=0, bool balance=True, float alpha=1.6, int oversample=2) "
        "-> (Tensor L, Tensor S, Tensor iterations, "
        "Tensor converged, Tensor primal_residual, Tensor dual_residual, Tensor rank, Tensor mu, Tensor mu0, "
        "Tensor lamb, Tensor threshold, Tensor tail, Tensor gap, Tensor certified, Tensor block, "
        "Tensor svt_attempts, Tensor full_svt)");
}
LOWRANKEDIT_IMPL(rpca_ialm, &rpca_ialm, &rpca_ialm)
