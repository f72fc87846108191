// Entries of singular_value_threshold and _svt_krylov (the robust-PCA driver's partial SVT, exposed for tests):
// validate once, then the composed routes of csrc/singular_value_threshold.cpp.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/library.h>

#include "common/checks.h"
#include "registration.h"
#include "singular_value_threshold.h"

namespace {

// X: (..., m, n), tau: () or (...) -> (Y: (..., m, n), rank: (...) int64)
// symmetric: 1 = eigendecomposition of the lower triangle, 0 = SVD, -1 = eigh when X is symmetric to rounding
// (then its symmetric part is thresholded).
std::tuple<at::Tensor, at::Tensor> singular_value_threshold(const at::Tensor& X, const at::Tensor& tau,
                                                            int64_t symmetric) {
  constexpr const char* op = "singular_value_threshold";
  TORCH_CHECK(X.scalar_type() == at::kFloat || X.scalar_type() == at::kDouble, op,
              ": expected X to have dtype float32 or float64, got ", X.scalar_type());
  TORCH_CHECK_VALUE(X.dim() >= 2, op, ": expected X of shape (..., m, n), got ", lowrankedit::py_shape(X.sizes()));
  lowrankedit::check_backend(op, X);
  TORCH_CHECK_VALUE(symmetric >= -1 && symmetric <= 1, op, ": expected symmetric in {-1 (auto), 0, 1}, got ",
                    symmetric);
  const int64_t m = X.size(-2), n = X.size(-1);
  const auto batch_shape = X.sizes().slice(0, X.dim() - 2);
  const int64_t B = c10::multiply_integers(batch_shape);
  const auto taub = lowrankedit::per_matrix(op, "tau", tau, batch_shape, X.device(), /*positive=*/false);
  TORCH_CHECK_VALUE(symmetric != 1 || m == n, op, ": symmetric=True needs square matrices, got X of shape ",
                    lowrankedit::py_shape(X.sizes()));
  lowrankedit::check_finite(op, "X", X);
  auto rank_shape = batch_shape.vec();
  if (X.numel() == 0) {
    return {at::zeros_like(X, at::MemoryFormat::Contiguous), at::zeros(rank_shape, X.options().dtype(at::kLong))};
  }
  auto Xb = X.reshape({B, m, n}).contiguous();
  bool use_eigh = symmetric == 1;
  if (symmetric == -1 && m == n) std::tie(Xb, use_eigh) = lowrankedit::svt::symmetric_to_rounding(Xb);
  auto [Y, rank] = lowrankedit::svt::exact(Xb, taub, use_eigh);
  return {Y.reshape(X.sizes()), rank.reshape(rank_shape)};
}

// A: (B, n, n) symmetric, tau: (B,) -> (L, rank, W_next); see lowrankedit::svt::krylov.
std::tuple<at::Tensor, at::Tensor, at::Tensor> svt_krylov(const at::Tensor& A, const at::Tensor& tau,
                                                          const c10::optional<at::Tensor>& W, int64_t steps,
                                                          int64_t seed) {
  constexpr const char* op = "_svt_krylov";
  TORCH_CHECK((A.scalar_type() == at::kFloat || A.scalar_type() == at::kDouble) && A.dim() == 3 &&
                  A.size(1) == A.size(2),
              op, ": expected A to be a float32/float64 tensor of shape (B, n, n), got ", A.scalar_type(), " ",
              lowrankedit::py_shape(A.sizes()));
  lowrankedit::check_backend(op, A);
  lowrankedit::check_finite(op, "A", A);
  const auto taub = lowrankedit::per_matrix(op, "tau", tau, A.sizes().slice(0, 1), A.device(), false);
  TORCH_CHECK_VALUE(steps >= 1, op, ": expected steps >= 1, got ", steps);
  at::Tensor Wc;
  if (W.has_value()) {
    TORCH_CHECK(W->dim() == 3 && W->size(0) == A.size(0) && W->size(1) == A.size(1), op,
                ": expected W of shape (B, n, p), got ", lowrankedit::py_shape(W->sizes()));
    Wc = W->to(A.options()).contiguous();
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
  return lowrankedit::svt::krylov(A.contiguous(), taub, Wc, steps, gen);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(lowrankedit, m) {
  m.def("singular_value_threshold(Tensor X, Tensor tau, int symmetric=-1) -> (Tensor Y, Tensor rank)");
  m.def("_svt_krylov(Tensor A, Tensor tau, Tensor? W=None, int steps=3, int seed=0) -> "
        "(Tensor L, Tensor rank, Tensor W_next)");
}
LOWRANKEDIT_IMPL(singular_value_threshold, &singular_value_threshold, &singular_value_threshold)
LOWRANKEDIT_IMPL(_svt_krylov, &svt_krylov, &svt_krylov)
