// Entry of generalized_eigh_topk: validate once (shapes, dtypes, devices, finite A and B, k, tau and the Krylov
// parameters), then the composed-ATen solver of csrc/generalized_eigh_topk.cpp (the same code on every device).
#include <torch/library.h>

#include <cmath>

#include "common/checks.h"
#include "generalized_eigh_topk.h"
#include "registration.h"

namespace {

using Out = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                       at::Tensor>;

// A: (D, D), B: (D, D) -> (eigenvalues (k,) descending, eigenvectors (D, k), residuals (k,) float64 on the CPU, and
// 0-dim CPU statistics: restarts, applications, block, steps (int64), converged (bool))
Out generalized_eigh_topk(const at::Tensor& A, const at::Tensor& B, int64_t k, double tau, int64_t block,
                          int64_t steps, double tol, int64_t max_restarts, int64_t seed, bool unit_norm) {
  constexpr const char* op = "generalized_eigh_topk";
  lowrankedit::check_floating(op, "A", A);
  lowrankedit::check_floating(op, "B", B);
  TORCH_CHECK_TYPE(A.scalar_type() == at::kFloat || A.scalar_type() == at::kDouble, op,
                   ": expected A of dtype float32 or float64, got ", A.scalar_type());
  lowrankedit::check_same_dtype(op, "A", A, "B", B);
  lowrankedit::check_same_device(op, "A", A, "B", B);
  lowrankedit::check_dim(op, "A", A, 2, "(D, D)");
  lowrankedit::check_dim(op, "B", B, 2, "(D, D)");
  TORCH_CHECK_VALUE(A.size(0) == A.size(1), op, ": expected A of shape (D, D) (square), got ", A.sizes());
  TORCH_CHECK_VALUE(A.sizes() == B.sizes(), op, ": expected B of the same shape as A ", A.sizes(), ", got ",
                    B.sizes());
  lowrankedit::check_backend(op, A);
  const int64_t D = A.size(0);
  TORCH_CHECK_VALUE(D >= 1, op, ": expected D >= 1, got A of shape ", A.sizes());
  TORCH_CHECK_VALUE(k >= 1 && k <= D, op, ": expected k in [1, ", D, "], got ", k);
  lowrankedit::check_finite_scalar(op, "tau", tau);
  TORCH_CHECK_VALUE(tau >= 0, op, ": expected tau >= 0, got ", tau);
  TORCH_CHECK_VALUE(block == 0 || block >= k, op, ": expected block = 0 (automatic) or block >= k = ", k, ", got ",
                    block);
  TORCH_CHECK_VALUE(steps >= 0, op, ": expected steps >= 0, got ", steps);
  TORCH_CHECK_VALUE(std::isfinite(tol) && tol > 0, op, ": expected tol > 0 and finite, got ", tol);
  TORCH_CHECK_VALUE(max_restarts >= 0, op, ": expected max_restarts >= 0, got ", max_restarts);
  TORCH_CHECK_VALUE(seed >= 0, op, ": expected seed >= 0, got ", seed);
  lowrankedit::check_finite(op, "A", A);
  lowrankedit::check_finite(op, "B", B);
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
  const auto cpu = at::TensorOptions().device(at::kCPU);
  const auto i64 = [&](int64_t v) { return at::scalar_tensor(v, cpu.dtype(at::kLong)); };
  return {r.eigenvalues.contiguous(), r.eigenvectors.contiguous(), r.residuals.to(cpu.dtype(at::kDouble)).contiguous(),
          i64(r.restarts), i64(r.applications), i64(r.block), i64(r.steps),
          at::scalar_tensor(r.converged, cpu.dtype(at::kBool))};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(lowrankedit, m) {
  m.def("generalized_eigh_topk(Tensor A, Tensor B, int k, float tau=0.001, int block=0, int steps=3, "
        "float tol=1e-10, int max_restarts=200, int seed=0, bool unit_norm=True) -> (Tensor eigenvalues, "
        "Tensor eigenvectors, Tensor residuals, Tensor restarts, Tensor applications, Tensor block, Tensor steps, "
        "Tensor converged)");
}
LOWRANKEDIT_IMPL(generalized_eigh_topk, &generalized_eigh_topk, &generalized_eigh_topk)
