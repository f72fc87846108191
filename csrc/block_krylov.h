#pragma once
// Rayleigh-Ritz on a block Krylov space, shared by the partial eigensolvers (generalized_eigh_topk, rpca_ialm).
// Composed ATen only (QR, GEMM, the small symmetric eigensolver), so one code serves every dtype and device.
#include <ATen/ATen.h>

#include <functional>

namespace lowrankedit {

// An operator on column blocks: V (n, p) -> C V (n, p), C symmetric.
using BlockOperator = std::function<at::Tensor(const at::Tensor&)>;

struct RitzPairs {
  at::Tensor values;     // (m,) Ritz values, sorted descending (by |value| when by_magnitude)
  at::Tensor vectors;    // (n, m) orthonormal Ritz vectors, column j for values[j]
  at::Tensor residuals;  // (m,) ||C u_j - values[j] u_j||_2 (exact, from the stored products; no extra apply)
};

// Rayleigh-Ritz of C on span{X0, C X0, ..., C^steps X0} (orthonormalized block by block, with full
// re-orthogonalization). X0: (n, p), p * (steps + 1) <= n. steps + 1 applications of C on (n, p) blocks.
RitzPairs block_krylov_ritz(const BlockOperator& apply, const at::Tensor& X0, int64_t steps, bool by_magnitude);

}  // namespace lowrankedit
