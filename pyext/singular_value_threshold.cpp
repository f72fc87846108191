// Public entry of singular_value_threshold: validate once, make contiguous, dispatch by device.
// The decomposition and the rebuild are ATen calls shared by both devices (LAPACK on the CPU, cuSOLVER/cuBLAS on
// CUDA: a hand-written eigensolver would not beat them); the spectrum shrinkage and survivor count are our kernels.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/extension.h>

#include <algorithm>

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

// Partial SVT of symmetric matrices for iterative solvers (robust PCA), where only a few eigenvalues pass the
// threshold and the matrix changes little between calls. Rayleigh-Ritz on the block Krylov space
// span{X, A X, ..., A^steps X}, X = [W, one random column], W the previous call's leading Ritz vectors: a handful of
// (n, p) products instead of a full eigendecomposition. The block is widened until at least two of its Ritz values
// (by magnitude) fall below tau, and the full eigh is used when the Krylov space would not be small (m > n / 2).
// The random column (from the caller's generator) keeps eigenvalues that newly cross tau within reach. The result is
// as exact as the Ritz pairs converge; solvers certify their final iterate with the exact route.
// A: (B, n, n) symmetric contiguous, tau: (B,) f64, W: (B, n, p) or undefined
//   -> (L (B, n, n), rank (B,) int64, W_next (B, n, max(rank) + 2))
std::tuple<at::Tensor, at::Tensor, at::Tensor> svt_krylov(const at::Tensor& A, const at::Tensor& tau,
                                                          const at::Tensor& W, int64_t steps, at::Generator gen) {
  const int64_t B = A.size(0), n = A.size(1);
  int64_t p = W.defined() ? std::max<int64_t>(W.size(2), 2) : 2;
  at::Tensor Wp = W.defined() ? W : at::Tensor();
  const auto opts = A.options();
  for (;;) {
    const int64_t m = (p + 1) * (steps + 1);
    if (2 * m > n) break;  // the Krylov space is not small: exact route below
    const int64_t given = Wp.defined() ? Wp.size(2) : 0;
    auto fresh = at::randn({B, n, p + 1 - given}, gen, opts.device(at::kCPU)).to(A.device());
    std::vector<at::Tensor> blocks{given ? at::cat({Wp, fresh}, 2) : fresh};
    for (int64_t j = 0; j < steps; ++j) {
      auto K = at::matmul(A, blocks.back());
      blocks.push_back(K / K.norm(2, {1}, true).clamp_min(1e-300));
    }
    // Householder QR: Q is orthonormal to rounding even though the powers are nearly parallel.
    auto Q = std::get<0>(at::linalg_qr(at::cat(blocks, 2), "reduced"));
    auto H = at::matmul(Q.mT(), at::matmul(A, Q));
    auto [theta, Z] = at::linalg_eigh((H + H.mT()) * 0.5, "L");
    auto [w, surv] = spectrum(theta.contiguous(), tau);
    const int64_t r = surv.max().item<int64_t>();
    auto U = at::matmul(Q, Z);  // (B, n, m) Ritz vectors
    auto order = std::get<1>(theta.abs().sort(-1, /*descending=*/true));
    const auto lead_idx = order.narrow(1, 0, std::min<int64_t>(r + 2, m));
    auto lead = U.gather(2, lead_idx.unsqueeze(1).expand({B, n, -1}));
    if (r + 2 > p + 1) {  // not enough Ritz values below tau in the block: widen it and retry
      p = r + 2;
      Wp = lead;
      continue;
    }
    // The survivors are the leading Ritz pairs by magnitude: rebuild from those (r + 2 columns, the others carry 0).
    auto L = at::matmul(lead * w.gather(1, lead_idx).unsqueeze(-2), lead.mT());
    return {L, surv, lead.narrow(2, 0, std::max<int64_t>(r + 2, 2)).contiguous()};
  }
  auto [evals, evecs] = at::linalg_eigh(A, "L");
  auto [w, surv] = spectrum(evals.contiguous(), tau);
  const int64_t r = surv.max().item<int64_t>();
  auto order = std::get<1>(evals.abs().sort(-1, /*descending=*/true));
  auto lead = evecs.gather(2, order.narrow(1, 0, std::min<int64_t>(std::max<int64_t>(r + 2, 2), n))
                                  .unsqueeze(1).expand({B, n, -1}));
  auto L = at::matmul(evecs * w.unsqueeze(-2), evecs.mT());
  return {L, surv, lead.contiguous()};
}

void bind_singular_value_threshold(pybind11::module_& m) {
  m.def("singular_value_threshold", &singular_value_threshold,
        "X (..., m, n), tau (B,) f64 -> (U shrink(S, tau) V^T, rank); eigh of the lower triangle when symmetric",
        pybind11::arg("X"), pybind11::arg("tau"), pybind11::arg("symmetric") = -1,
        pybind11::arg("check_finite") = true);
  m.def(
      "singular_value_threshold_krylov",
      [](const at::Tensor& A, const at::Tensor& tau, const c10::optional<at::Tensor>& W, int64_t steps,
         int64_t seed) {
        constexpr const char* op = "singular_value_threshold_krylov";
        TORCH_CHECK(A.defined() && (A.scalar_type() == at::kFloat || A.scalar_type() == at::kDouble) &&
                        A.dim() == 3 && A.size(1) == A.size(2) && A.is_contiguous(),
                    op, ": expected A to be a contiguous float32/float64 tensor of shape (B, n, n)");
        TORCH_CHECK(tau.scalar_type() == at::kDouble && tau.dim() == 1 && tau.size(0) == A.size(0), op,
                    ": expected tau to be a float64 tensor of shape (", A.size(0), ")");
        TORCH_CHECK(steps >= 1, op, ": expected steps >= 1, got ", steps);
        if (W.has_value()) {
          TORCH_CHECK(W->dim() == 3 && W->size(0) == A.size(0) && W->size(1) == A.size(1), op,
                      ": expected W of shape (B, n, p), got ", W->sizes());
        }
        auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
        return svt_krylov(A, tau, W.has_value() ? W->to(A.options()) : at::Tensor(), steps, gen);
      },
      "Partial SVT of symmetric A (B, n, n) by Rayleigh-Ritz on a warm-started block Krylov space: "
      "(L, rank, W_next)",
      pybind11::arg("A"), pybind11::arg("tau"), pybind11::arg("W") = pybind11::none(), pybind11::arg("steps") = 3,
      pybind11::arg("seed") = 0);
}
