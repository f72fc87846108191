// Entry of generalized_eigh: validate once (shapes, dtypes, devices, finite A and B, tau >= 0), then the driver of
// csrc/generalized_eigh.cpp.
#include <torch/library.h>

#include "common/checks.h"
#include "generalized_eigh.h"
#include "registration.h"

namespace {

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
  TORCH_CHECK_VALUE(tau >= 0, op, ": expected tau >= 0, got ", tau);
  lowrankedit::check_backend(op, A);
  const int64_t D = A.size(-1);
  std::vector<int64_t> vec_shape(A.sizes().begin(), A.sizes().end() - 1);
  if (A.numel() == 0) {
    return {at::empty(vec_shape, A.options()), at::empty(A.sizes(), A.options())};
  }
  lowrankedit::check_finite(op, "A", A);
  lowrankedit::check_finite(op, "B", B);
  auto [w, X] = lowrankedit::geigh::solve(op, A.reshape({-1, D, D}).contiguous(), B.reshape({-1, D, D}).contiguous(),
                                          tau, unit_norm);
  return {w.reshape(vec_shape), X.reshape(A.sizes())};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(lowrankedit, m) {
  m.def("generalized_eigh(Tensor A, Tensor B, float tau, bool unit_norm=True) -> (Tensor eigenvalues, "
        "Tensor eigenvectors)");
}
LOWRANKEDIT_IMPL(generalized_eigh, &generalized_eigh, &generalized_eigh)
