// Public entry of generalized_eigh: validate once, make contiguous, dispatch by device.
//
// A x = lambda B' x with B' = sym(B) + tau tr(B) I, both symmetric, B' positive definite:
//   B' = L L^T (Cholesky), C = L^{-1} A L^{-T}, C y = lambda y (symmetric eigensolver), x = L^{-T} y.
// What is ATen and why: the Cholesky factor, the three triangular solves and the symmetric eigensolver are
// ATen's linalg_cholesky_ex / linalg_solve_triangular / linalg_eigh, i.e. LAPACK (potrf, trsm, syevd) on the CPU
// and cuSOLVER / cuBLAS on CUDA. Those are blocked, tuned O(D^3) routines that no hand-written kernel here would
// beat, and the same calls serve both devices, so this driver is shared (device-agnostic). The O(D^2) elementwise
// work around them is fused into our own CPU/CUDA kernels (csrc/{cpu,cuda}/generalized_eigh_*):
//   prepare  - symmetrize A and B and add tau tr(B) to B's diagonal, batched, in one pass;
//   finalize - reverse to descending order, fix each eigenvector's sign and scale it to unit norm, in one pass.
#include <torch/extension.h>

#include "common/checks.h"
#include "generalized_eigh.h"

namespace {

std::tuple<at::Tensor, at::Tensor> prepare(const at::Tensor& A, const at::Tensor& B, double tau) {
#ifdef WITH_CUDA
  if (A.is_cuda()) return generalized_eigh_prepare_cuda(A, B, tau);
#endif
  return generalized_eigh_prepare_cpu(A, B, tau);
}

std::tuple<at::Tensor, at::Tensor> finalize(const at::Tensor& w, const at::Tensor& X, bool unit_norm) {
#ifdef WITH_CUDA
  if (X.is_cuda()) return generalized_eigh_finalize_cuda(w, X, unit_norm);
#endif
  return generalized_eigh_finalize_cpu(w, X, unit_norm);
}

}  // namespace

// A: (..., D, D), B: (..., D, D) -> (eigenvalues (..., D) descending, eigenvectors (..., D, D) in columns)
std::tuple<at::Tensor, at::Tensor> generalized_eigh(const at::Tensor& A, const at::Tensor& B, double tau,
                                                    bool unit_norm) {
  constexpr const char* op = "generalized_eigh";
  lowrankedit::check_floating(op, "A", A);
  lowrankedit::check_floating(op, "B", B);
  TORCH_CHECK(A.scalar_type() == at::kFloat || A.scalar_type() == at::kDouble, op,
              ": expected A of dtype float32 or float64 (LAPACK/cuSOLVER have no half-precision eigensolver), got ",
              A.scalar_type());
  lowrankedit::check_same_dtype(op, "A", A, "B", B);
  lowrankedit::check_same_device(op, "A", A, "B", B);
  lowrankedit::check_min_dim(op, "A", A, 2, "(..., D, D)");
  TORCH_CHECK(A.size(-1) == A.size(-2), op, ": expected A of shape (..., D, D) (square), got ", A.sizes());
  TORCH_CHECK(A.sizes() == B.sizes(), op, ": expected B of the same shape as A ", A.sizes(), ", got ", B.sizes());
  lowrankedit::check_finite_scalar(op, "tau", tau);
  TORCH_CHECK(tau >= 0, op, ": expected tau >= 0, got ", tau);
  lowrankedit::check_backend(op, A);

  const int64_t D = A.size(-1);
  const auto batch_shape = A.sizes().slice(0, A.dim() - 2);
  std::vector<int64_t> vec_shape(batch_shape.begin(), batch_shape.end());
  vec_shape.push_back(D);
  if (A.numel() == 0) {
    return {at::empty(vec_shape, A.options()), at::empty(A.sizes(), A.options())};
  }
  TORCH_CHECK(at::isfinite(A).all().item<bool>(), op, ": A contains NaN or Inf");
  TORCH_CHECK(at::isfinite(B).all().item<bool>(), op, ": B contains NaN or Inf");

  const auto A3 = A.reshape({-1, D, D}).contiguous();
  const auto B3 = B.reshape({-1, D, D}).contiguous();
  auto [As, Bs] = prepare(A3, B3, tau);

  // L L^T = B'; info[n] = k > 0 when the leading minor of order k of B'[n] is not positive.
  auto [L, info] = at::linalg_cholesky_ex(Bs, /*upper=*/false, /*check_errors=*/false);
  const auto bad = info.gt(0);
  if (bad.any().item<bool>()) {
    const int64_t n = bad.to(at::kLong).argmax().item<int64_t>();
    TORCH_CHECK(false, op, ": B + tau*tr(B)*I is not positive definite (batch element ", n,
                ": its leading minor of order ", info[n].item<int64_t>(), " is not positive) with tau = ", tau,
                "; a singular or indefinite B needs tau > 0 (the paper uses tau = 1e-3)");
  }
  // C = L^{-1} A L^{-T}: X1 = L^{-1} A, then C = L^{-1} X1^T (A symmetric, so X1^T = A L^{-T}).
  const auto X1 = at::linalg_solve_triangular(L, As, /*upper=*/false, /*left=*/true, /*unitriangular=*/false);
  const auto C = at::linalg_solve_triangular(L, X1.mT(), /*upper=*/false, /*left=*/true, /*unitriangular=*/false);
  auto [w, Y] = at::linalg_eigh(C, "L");  // ascending; reads the lower triangle only
  // x = L^{-T} y: B'-orthonormal columns.
  const auto X = at::linalg_solve_triangular(L.mT(), Y, /*upper=*/true, /*left=*/true, /*unitriangular=*/false);
  auto [wd, Xd] = finalize(w.contiguous(), X.contiguous(), unit_norm);
  return {wd.reshape(vec_shape), Xd.reshape(A.sizes())};
}

void bind_generalized_eigh(pybind11::module_& m) {
  m.def("generalized_eigh", &generalized_eigh,
        "A (..., D, D), B (..., D, D) -> (eigenvalues (..., D) descending, eigenvectors (..., D, D) in columns) of "
        "A x = lambda (B + tau tr(B) I) x; columns unit-norm if unit_norm else B'-orthonormal (float32/float64, "
        "CPU or CUDA)",
        pybind11::arg("A"), pybind11::arg("B"), pybind11::arg("tau"), pybind11::arg("unit_norm"));
}
