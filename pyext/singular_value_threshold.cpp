// Public entry of singular_value_threshold: validate once, make contiguous, dispatch by device.
// The decomposition and the rebuild are ATen calls shared by both devices (LAPACK on the CPU, cuSOLVER/cuBLAS on
// CUDA: a hand-written eigensolver would not beat them); the spectrum shrinkage and survivor count are our kernels.
#include <torch/extension.h>

#include "common/checks.h"
#include "singular_value_threshold.h"

namespace {

std::tuple<at::Tensor, at::Tensor> spectrum(const at::Tensor& values, const at::Tensor& tau) {
#ifdef WITH_CUDA
  if (values.is_cuda()) return svt_spectrum_cuda(values, tau);
#endif
  return svt_spectrum_cpu(values, tau);
}

}  // namespace

// X: (..., m, n), tau: () or (...) float64 -> (Y: (..., m, n), rank: (...) int64)
// symmetric: 1 = eigendecomposition of the lower triangle, 0 = SVD, -1 = eigh when X equals X^T exactly.
std::tuple<at::Tensor, at::Tensor> singular_value_threshold(const at::Tensor& X, const at::Tensor& tau,
                                                            int64_t symmetric, bool check_finite) {
  constexpr const char* op = "singular_value_threshold";
  TORCH_CHECK(X.defined(), op, ": expected X to be a tensor, got an undefined tensor");
  TORCH_CHECK(X.scalar_type() == at::kFloat || X.scalar_type() == at::kDouble, op,
              ": expected X to have dtype float32 or float64, got ", X.scalar_type());
  lowrankedit::check_min_dim(op, "X", X, 2, "(..., m, n)");
  lowrankedit::check_backend(op, X);
  TORCH_CHECK(symmetric >= -1 && symmetric <= 1, op, ": expected symmetric in {-1 (auto), 0, 1}, got ", symmetric);
  const int64_t m = X.size(-2), n = X.size(-1);
  const auto batch_shape = X.sizes().slice(0, X.dim() - 2);
  const int64_t B = c10::multiply_integers(batch_shape);
  TORCH_CHECK(tau.defined() && tau.scalar_type() == at::kDouble, op, ": expected tau to be a float64 tensor");
  TORCH_CHECK(tau.numel() == 1 || tau.numel() == B, op, ": expected tau to be a scalar or to have one value per ",
              "matrix (", B, "), got shape ", tau.sizes());
  lowrankedit::check_same_device(op, "X", X, "tau", tau);
  TORCH_CHECK(at::isfinite(tau).all().item<bool>(), op, ": expected tau to be finite, got ", tau);
  TORCH_CHECK((tau >= 0).all().item<bool>(), op, ": expected tau >= 0, got ", tau);
  if (symmetric == 1) {
    TORCH_CHECK(m == n, op, ": symmetric=True needs square matrices, got X of shape ", X.sizes());
  }
  if (check_finite && X.numel() > 0) {
    TORCH_CHECK(at::isfinite(X).all().item<bool>(), op, ": expected X to be finite, got NaN or Inf entries");
  }
  auto rank_shape = batch_shape.vec();
  if (X.numel() == 0) {
    return {at::zeros_like(X, at::MemoryFormat::Contiguous), at::zeros(rank_shape, X.options().dtype(at::kLong))};
  }
  const auto Xb = X.reshape({B, m, n}).contiguous();
  const auto taub = tau.reshape({-1}).expand({B}).contiguous();
  const bool use_eigh = symmetric == 1 || (symmetric == -1 && m == n && at::equal(Xb, Xb.mT()));

  at::Tensor Y, survivors;
  if (use_eigh) {
    // X = U diag(lambda) U^T; singular values are |lambda|, so SVT shrinks each eigenvalue toward zero.
    auto [evals, evecs] = at::linalg_eigh(Xb, "L");
    auto [w, surv] = spectrum(evals.contiguous(), taub);
    survivors = surv;
    const int64_t k = surv.max().item<int64_t>();
    if (k == 0) {
      Y = at::zeros_like(Xb);
    } else if (k == n) {
      Y = at::matmul(evecs * w.unsqueeze(-2), evecs.mT());
    } else {
      // Rebuild from the k largest |shrunk| eigenvalues only (entries with fewer survivors carry zeros there).
      auto idx = std::get<1>(w.abs().topk(k, -1));                       // (B, k)
      auto wk = w.gather(-1, idx);                                       // (B, k)
      auto Uk = evecs.gather(-1, idx.unsqueeze(-2).expand({B, n, k}));   // (B, n, k)
      Y = at::matmul(Uk * wk.unsqueeze(-2), Uk.mT());
    }
  } else {
    auto [U, S, Vh] = at::linalg_svd(Xb, /*full_matrices=*/false);
    auto [w, surv] = spectrum(S.contiguous(), taub);
    survivors = surv;
    const int64_t k = surv.max().item<int64_t>();  // singular values are sorted: survivors come first
    if (k == 0) {
      Y = at::zeros_like(Xb);
    } else {
      Y = at::matmul(U.narrow(-1, 0, k) * w.narrow(-1, 0, k).unsqueeze(-2), Vh.narrow(-2, 0, k));
    }
  }
  return {Y.reshape(X.sizes()), survivors.reshape(rank_shape)};
}

void bind_singular_value_threshold(pybind11::module_& m) {
  m.def("singular_value_threshold", &singular_value_threshold,
        "X (..., m, n), tau (B,) f64 -> (U shrink(S, tau) V^T, rank); eigh of the lower triangle when symmetric",
        pybind11::arg("X"), pybind11::arg("tau"), pybind11::arg("symmetric") = -1,
        pybind11::arg("check_finite") = true);
}
