// Singular-value thresholding, composed from ATen's decompositions and our spectrum kernel; device-agnostic (the
// same calls serve CPU and CUDA: a hand-written eigensolver would not beat LAPACK / cuSOLVER).
#include "singular_value_threshold.h"

#include <algorithm>
#include <limits>
#include <vector>

namespace lowrankedit {
namespace svt {

std::tuple<at::Tensor, at::Tensor> spectrum(const at::Tensor& values, const at::Tensor& tau) {
#ifdef WITH_CUDA
  if (values.is_cuda()) return svt_spectrum_cuda(values, tau);
#endif
  return svt_spectrum_cpu(values, tau);
}

std::pair<at::Tensor, bool> symmetric_to_rounding(const at::Tensor& Xb) {
  if (Xb.numel() == 0) return {Xb, true};
  const auto asym = (Xb - Xb.mT()).abs().amax();
  const auto big = Xb.abs().amax();
  const double eps = Xb.scalar_type() == at::kFloat ? std::numeric_limits<float>::epsilon()
                                                    : std::numeric_limits<double>::epsilon();
  // one sync for both numbers
  const auto both = at::stack({asym, big}).to(at::kDouble).cpu();
  const double a = both[0].item<double>(), m = both[1].item<double>();
  if (!(a <= kSymmetryTol * eps * m)) return {Xb, false};
  return {a > 0 ? ((Xb + Xb.mT()) * 0.5).contiguous() : Xb, true};
}

std::tuple<at::Tensor, at::Tensor> exact(const at::Tensor& Xb, const at::Tensor& tau, bool use_eigh) {
  const int64_t B = Xb.size(0), n = Xb.size(2);
  at::Tensor Y, survivors;
  if (use_eigh) {
    // X = U diag(lambda) U^T; singular values are |lambda|, so SVT shrinks each eigenvalue toward zero.
    auto [evals, evecs] = at::linalg_eigh(Xb, "L");
    auto [w, surv] = spectrum(evals.contiguous(), tau);
    survivors = surv;
    const int64_t k = surv.max().item<int64_t>();
    if (k == 0) {
      Y = at::zeros_like(Xb);
    } else if (k == n) {
      Y = at::matmul(evecs * w.unsqueeze(-2), evecs.mT());
    } else {
      // Rebuild from the k largest |shrunk| eigenvalues only (entries with fewer survivors carry zeros there).
      auto idx = std::get<1>(w.abs().topk(k, -1));                      // (B, k)
      auto wk = w.gather(-1, idx);                                      // (B, k)
      auto Uk = evecs.gather(-1, idx.unsqueeze(-2).expand({B, n, k}));  // (B, n, k)
      Y = at::matmul(Uk * wk.unsqueeze(-2), Uk.mT());
    }
  } else {
    auto [U, S, Vh] = at::linalg_svd(Xb, /*full_matrices=*/false);
    auto [w, surv] = spectrum(S.contiguous(), tau);
    survivors = surv;
    const int64_t k = surv.max().item<int64_t>();  // singular values are sorted: survivors come first
    if (k == 0) {
      Y = at::zeros_like(Xb);
    } else {
      Y = at::matmul(U.narrow(-1, 0, k) * w.narrow(-1, 0, k).unsqueeze(-2), Vh.narrow(-2, 0, k));
    }
  }
  return {Y, survivors};
}

// Rayleigh-Ritz on the block Krylov space span{X, A X, ..., A^steps X}, X = [W, one random column], W the previous
// call's leading Ritz vectors: a handful of (n, p) products instead of a full eigendecomposition, for iterative
// solvers (robust PCA) where few eigenvalues pass the threshold and the matrix changes little between calls. The
// block is widened until at least two of its Ritz values (by magnitude) fall below tau, and the full eigh is used
// when the Krylov space would not be small (m > n / 2). The random column (from the caller's generator) keeps
// eigenvalues that newly cross tau within reach. The result is as exact as the Ritz pairs converge; solvers
// certify their final iterate with the exact route.
std::tuple<at::Tensor, at::Tensor, at::Tensor> krylov(const at::Tensor& A, const at::Tensor& tau, const at::Tensor& W,
                                                      int64_t steps, at::Generator gen) {
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

}  // namespace svt
}  // namespace lowrankedit
