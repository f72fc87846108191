// Public entry of generalized_eigh_topk: validate once, then the composed-ATen solver in csrc/ (any device).
#include <torch/extension.h>

#include "common/checks.h"
#include "generalized_eigh_topk.h"

namespace {

// A: (D, D), B: (D, D) -> (eigenvalues (k,) descending, eigenvectors (D, k), residuals (k,), info dict)
pybind11::tuple generalized_eigh_topk_entry(const at::Tensor& A, const at::Tensor& B, int64_t k, double tau,
                                            int64_t block, int64_t steps, double tol, int64_t max_restarts,
                                            int64_t seed, bool unit_norm) {
  constexpr const char* op = "generalized_eigh_topk";
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor&>{"A", A}, {"B", B}}) {
    TORCH_CHECK(t.defined(), op, ": expected ", name, " to be a tensor, got an undefined tensor");
    TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": expected ", name,
                " of dtype float32 or float64, got ", t.scalar_type());
    lowrankedit::check_dim(op, name, t, 2, "(D, D)");
  }
  TORCH_CHECK(A.size(0) == A.size(1), op, ": expected A of shape (D, D) (square), got ", A.sizes());
  TORCH_CHECK(A.sizes() == B.sizes(), op, ": expected B of the same shape as A ", A.sizes(), ", got ", B.sizes());
  lowrankedit::check_same_dtype(op, "A", A, "B", B);
  lowrankedit::check_same_device(op, "A", A, "B", B);
  lowrankedit::check_backend(op, A);
  const int64_t D = A.size(0);
  TORCH_CHECK(D >= 1, op, ": expected D >= 1, got A of shape ", A.sizes());
  TORCH_CHECK(k >= 1 && k <= D, op, ": expected k in [1, ", D, "], got ", k);
  lowrankedit::check_finite_scalar(op, "tau", tau);
  TORCH_CHECK(tau >= 0, op, ": expected tau >= 0, got ", tau);
  TORCH_CHECK(block == 0 || block >= k, op, ": expected block = 0 (automatic) or block >= k = ", k, ", got ", block);
  TORCH_CHECK(steps >= 0, op, ": expected steps >= 0, got ", steps);
  TORCH_CHECK(std::isfinite(tol) && tol > 0, op, ": expected tol > 0 and finite, got ", tol);
  TORCH_CHECK(max_restarts >= 0, op, ": expected max_restarts >= 0, got ", max_restarts);
  TORCH_CHECK(seed >= 0, op, ": expected seed >= 0, got ", seed);
  TORCH_CHECK(at::isfinite(A).all().item<bool>(), op, ": A contains NaN or Inf");
  TORCH_CHECK(at::isfinite(B).all().item<bool>(), op, ": B contains NaN or Inf");
  lowrankedit::GeneralizedEighTopkOptions o;
  o.k = k;
  o.tau = tau;
  o.block = block;
  o.steps = steps;
  o.tol = tol;
  o.max_restarts = max_restarts;
  o.seed = static_cast<uint64_t>(seed);
  o.unit_norm = unit_norm;
  const auto r = lowrankedit::generalized_eigh_topk(A.contiguous(), B.contiguous(), o);
  pybind11::dict info;
  info["restarts"] = r.restarts;
  info["applications"] = r.applications;
  info["block"] = r.block;
  info["steps"] = r.steps;
  info["converged"] = r.converged;
  return pybind11::make_tuple(r.eigenvalues, r.eigenvectors, r.residuals, info);
}

}  // namespace

void bind_generalized_eigh_topk(pybind11::module_& m) {
  m.def("generalized_eigh_topk", &generalized_eigh_topk_entry,
        "A (D, D), B (D, D) -> the k leading eigenpairs of A x = lambda (B + tau tr(B) I) x by block Krylov "
        "through one Cholesky factor: (eigenvalues (k,), eigenvectors (D, k), residuals (k,), info)",
        pybind11::arg("A"), pybind11::arg("B"), pybind11::arg("k"), pybind11::arg("tau"), pybind11::arg("block"),
        pybind11::arg("steps"), pybind11::arg("tol"), pybind11::arg("max_restarts"), pybind11::arg("seed"),
        pybind11::arg("unit_norm"));
}
