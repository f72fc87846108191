// Rayleigh-Ritz on a block Krylov space (see block_krylov.h).
#include "block_krylov.h"

#include <vector>

namespace lowrankedit {

namespace {

// Orthonormal columns spanning W's part orthogonal to Q (Q undefined: no projection). Projected twice (classical
// Gram-Schmidt twice is enough for orthogonality to rounding) and re-orthogonalized after the QR: when W has
// (nearly) dependent columns, as the Krylov space of a low-rank operator does, Householder QR completes the basis
// with vectors that need not be orthogonal to Q.
at::Tensor orthonormal_complement(at::Tensor W, const at::Tensor& Q) {
  if (Q.defined()) {
    for (int pass = 0; pass < 2; ++pass) W = W - at::matmul(Q, at::matmul(Q.mT(), W));
  }
  auto Qn = std::get<0>(at::linalg_qr(W, "reduced"));
  if (Q.defined()) {
    Qn = Qn - at::matmul(Q, at::matmul(Q.mT(), Qn));
    Qn = std::get<0>(at::linalg_qr(Qn, "reduced"));
  }
  return Qn;
}

}  // namespace

RitzPairs block_krylov_ritz(const BlockOperator& apply, const at::Tensor& X0, int64_t steps, bool by_magnitude) {
  TORCH_CHECK(X0.dim() == 2 && X0.size(1) * (steps + 1) <= X0.size(0), "block_krylov_ritz: a block of ",
              X0.size(1), " columns and ", steps, " steps exceed n = ", X0.size(0));
  std::vector<at::Tensor> Qs{orthonormal_complement(X0, at::Tensor())};
  std::vector<at::Tensor> CQs;
  at::Tensor Q;  // all blocks so far
  for (int64_t j = 0;; ++j) {
    CQs.push_back(apply(Qs.back()));
    Q = at::cat(Qs, 1);
    if (j == steps) break;
    Qs.push_back(orthonormal_complement(CQs.back(), Q));
  }
  const auto CQ = at::cat(CQs, 1);
  const auto H = at::matmul(Q.mT(), CQ);
  auto [theta, Z] = at::linalg_eigh((H + H.mT()) * 0.5, "L");  // ascending
  const auto key = by_magnitude ? theta.abs() : theta;
  const auto order = std::get<1>(key.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  theta = theta.index_select(0, order);
  Z = Z.index_select(1, order);
  auto U = at::matmul(Q, Z);
  const auto R = at::matmul(CQ, Z) - U * theta.unsqueeze(0);
  return {theta, U, at::linalg_vector_norm(R, 2, {0}, false, c10::nullopt)};
}

}  // namespace lowrankedit
