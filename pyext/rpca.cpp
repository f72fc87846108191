// Entry of rpca: validate once (dtype, shape, finite M, lamb and mu > 0, the method's parameters), then the solver
// of csrc/rpca.cpp, which holds every rule of the iteration. The registered op runs to the end; the pybind entry
// rpca_progress (the one callback-taking function, for the progress bar) shares this validation and the solver.
#include <torch/extension.h>
#include <pybind11/functional.h>

#include <cmath>
#include <string>

#include "common/checks.h"
#include "registration.h"
#include "rpca.h"

namespace {

using Out = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                       at::Tensor, at::Tensor>;

Out run(const at::Tensor& M, const c10::optional<at::Tensor>& lamb, const c10::optional<at::Tensor>& mu,
        c10::string_view method, double tol, int64_t max_iter, int64_t symmetric, double rho, double alpha,
        std::function<void(const lowrankedit::rpca::Progress&)> progress) {
  constexpr const char* op = "rpca";
  TORCH_CHECK_TYPE(M.scalar_type() == at::kFloat || M.scalar_type() == at::kDouble, op,
                   ": expected M to have dtype float32 or float64, got ", M.scalar_type());
  TORCH_CHECK_VALUE(M.dim() >= 2 && M.size(-1) == M.size(-2), op,
                    ": expected square matrices M of shape (..., n, n), got ", lowrankedit::py_shape(M.sizes()));
  lowrankedit::check_backend(op, M);
  TORCH_CHECK_VALUE(method == "ialm" || method == "official", op,
                    ": expected method in ('ialm', 'official'), got '", std::string(method), "'");
  TORCH_CHECK_VALUE(max_iter >= 1, op, ": expected max_iter to be an int >= 1, got ", max_iter);
  TORCH_CHECK_VALUE(std::isfinite(tol) && tol >= 0, op, ": expected tol to be a finite number >= 0, got ", tol);
  TORCH_CHECK_VALUE(symmetric >= -1 && symmetric <= 1, op, ": expected symmetric in {-1 (auto), 0, 1}, got ",
                    symmetric);
  const bool official = method == "official";
  TORCH_CHECK_VALUE(official || (std::isfinite(rho) && rho >= 1), op, ": expected rho >= 1, got ", rho);
  TORCH_CHECK_VALUE(official || (alpha > 0 && alpha < 2), op, ": expected alpha in (0, 2), got ", alpha);
  const auto batch_shape = M.sizes().slice(0, M.dim() - 2);
  const int64_t B = c10::multiply_integers(batch_shape), n = M.size(-1);
  lowrankedit::check_finite(op, "M", M);
  const auto lamb_t = lowrankedit::per_matrix(
      op, "lamb", lamb.has_value() ? *lamb : at::scalar_tensor(1.0 / std::sqrt(double(std::max<int64_t>(n, 1))),
                                                                 at::kDouble),
      batch_shape, M.device(), /*positive=*/true);
  at::Tensor mu_t;
  if (mu.has_value()) mu_t = lowrankedit::per_matrix(op, "mu", *mu, batch_shape, M.device(), /*positive=*/true);
  std::vector<int64_t> bs(batch_shape.begin(), batch_shape.end());
  const auto cpu = at::TensorOptions().device(at::kCPU);
  if (M.numel() == 0) {
    const auto z = [&](at::ScalarType t) { return at::zeros(bs, cpu.dtype(t)); };
    return {at::zeros_like(M), at::zeros_like(M), z(at::kLong), at::ones(bs, cpu.dtype(at::kBool)), z(at::kDouble),
            z(at::kDouble), z(at::kLong), mu_t.defined() ? mu_t.cpu().reshape(bs).clone() : z(at::kDouble),
            lamb_t.cpu().reshape(bs).clone(), at::scalar_tensor(symmetric != 0, cpu.dtype(at::kBool))};
  }
  lowrankedit::rpca::Options opt;
  opt.official = official;
  opt.tol = tol;
  opt.max_iter = max_iter;
  opt.symmetric = symmetric;
  opt.rho = rho;
  opt.alpha = alpha;
  opt.progress = std::move(progress);
  auto r = lowrankedit::rpca::solve(M.reshape({B, n, n}).contiguous(), lamb_t, mu_t, opt);
  return {r.L.reshape(M.sizes()), r.S.reshape(M.sizes()), r.iterations.reshape(bs), r.converged.reshape(bs),
          r.primal.reshape(bs), r.dual.reshape(bs), r.rank.reshape(bs), r.mu.reshape(bs), lamb_t.cpu().reshape(bs).clone(),
          at::scalar_tensor(r.symmetric, cpu.dtype(at::kBool))};
}

Out rpca(const at::Tensor& M, const c10::optional<at::Tensor>& lamb, const c10::optional<at::Tensor>& mu,
         c10::string_view method, double tol, int64_t max_iter, int64_t symmetric, double rho, double alpha) {
  return run(M, lamb, mu, method, tol, max_iter, symmetric, rho, alpha, nullptr);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(lowrankedit, m) {
  m.def("rpca(Tensor M, Tensor? lamb=None, Tensor? mu=None, str method=\"ialm\", float tol=1e-7, "
        "int max_iter=10000, int symmetric=-1, float rho=2.0, float alpha=1.6) -> (Tensor L, Tensor S, "
        "Tensor iterations, Tensor converged, Tensor primal_residual, Tensor dual_residual, Tensor rank, Tensor mu, "
        "Tensor lamb, Tensor symmetric)");
}
LOWRANKEDIT_IMPL(rpca, &rpca, &rpca)

// rpca with a progress callback (called with (iterations, primal, dual, active) after each chunk of iterations).
void bind_rpca_progress(pybind11::module_& m) {
  m.def(
      "rpca_progress",
      [](const at::Tensor& M, const c10::optional<at::Tensor>& lamb, const c10::optional<at::Tensor>& mu,
         const std::string& method, double tol, int64_t max_iter, int64_t symmetric, double rho, double alpha,
         const std::function<void(int64_t, double, double, int64_t)>& callback) {
        return run(M, lamb, mu, method, tol, max_iter, symmetric, rho, alpha,
                   [&](const lowrankedit::rpca::Progress& p) { callback(p.iterations, p.primal, p.dual, p.active); });
      },
      "torch.ops.lowrankedit.rpca with a progress callback(iterations, primal, dual, active)", pybind11::arg("M"),
      pybind11::arg("lamb"), pybind11::arg("mu"), pybind11::arg("method"), pybind11::arg("tol"),
      pybind11::arg("max_iter"), pybind11::arg("symmetric"), pybind11::arg("rho"), pybind11::arg("alpha"),
      pybind11::arg("callback"));
}
