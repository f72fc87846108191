#include "generalized_eigh.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {
constexpr int64_t kTile = 32;  // square tiles keep both the row read and the transposed read in cache
}

// A: (N, D, D), B: (N, D, D) -> As = (A + A^T)/2, Bs = (B + B^T)/2 + tau tr(B) I, each (N, D, D)
std::tuple<at::Tensor, at::Tensor> generalized_eigh_prepare_cpu(const at::Tensor& A, const at::Tensor& B,
                                                                double tau) {
  auto As = at::empty_like(A, at::MemoryFormat::Contiguous);
  auto Bs = at::empty_like(B, at::MemoryFormat::Contiguous);
  const int64_t N = A.size(0), D = A.size(1);
  if (N == 0 || D == 0) return {As, Bs};
  AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "generalized_eigh_prepare_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* a = A.const_data_ptr<scalar_t>();
    const scalar_t* b = B.const_data_ptr<scalar_t>();
    scalar_t* as = As.mutable_data_ptr<scalar_t>();
    scalar_t* bs = Bs.mutable_data_ptr<scalar_t>();
    // Diagonal shift per batch element: tau * tr(B), accumulated in double.
    std::vector<acc_t> shift(N);
    for (int64_t n = 0; n < N; ++n) {
      double tr = 0;
      const scalar_t* bn = b + n * D * D;
      for (int64_t i = 0; i < D; ++i) tr += static_cast<double>(bn[i * D + i]);
      shift[n] = static_cast<acc_t>(tau * tr);
    }
    const int64_t tiles = (D + kTile - 1) / kTile;
    const int64_t work = N * tiles * tiles;  // (batch, tile row, tile col)
    at::parallel_for(0, work, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t n = t / (tiles * tiles);
        const int64_t ti = (t / tiles) % tiles, tj = t % tiles;
        const int64_t off = n * D * D;
        const int64_t i1 = std::min(D, (ti + 1) * kTile), j1 = std::min(D, (tj + 1) * kTile);
        for (int64_t i = ti * kTile; i < i1; ++i) {
          for (int64_t j = tj * kTile; j < j1; ++j) {
            const int64_t ij = off + i * D + j, ji = off + j * D + i;
            const acc_t av = (static_cast<acc_t>(a[ij]) + static_cast<acc_t>(a[ji])) * acc_t(0.5);
            acc_t bv = (static_cast<acc_t>(b[ij]) + static_cast<acc_t>(b[ji])) * acc_t(0.5);
            if (i == j) bv += shift[n];
            as[ij] = static_cast<scalar_t>(av);
            bs[ij] = static_cast<scalar_t>(bv);
          }
        }
      }
    });
  });
  return {As, Bs};
}

// w: (N, D) ascending, X: (N, D, D) columns -> wd: (N, D) descending, Xd: (N, D, D) reversed, sign-fixed columns
std::tuple<at::Tensor, at::Tensor> generalized_eigh_finalize_cpu(const at::Tensor& w, const at::Tensor& X,
                                                                 bool unit_norm) {
  auto wd = at::empty_like(w, at::MemoryFormat::Contiguous);
  auto Xd = at::empty_like(X, at::MemoryFormat::Contiguous);
  const int64_t N = X.size(0), D = X.size(1);
  if (N == 0 || D == 0) return {wd, Xd};
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "generalized_eigh_finalize_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    const scalar_t* x = X.const_data_ptr<scalar_t>();
    scalar_t* wo = wd.mutable_data_ptr<scalar_t>();
    scalar_t* xo = Xd.mutable_data_ptr<scalar_t>();
    // Work item: a block of kTile output columns of one batch element. Rows are walked in order, so every
    // read is a contiguous run of kTile entries (a column-at-a-time walk would stride by D).
    const int64_t blocks = (D + kTile - 1) / kTile;
    at::parallel_for(0, N * blocks, 1, [&](int64_t begin, int64_t end) {
      acc_t sumsq[kTile], best[kTile], scale[kTile];
      for (int64_t t = begin; t < end; ++t) {
        const int64_t n = t / blocks, j0 = (t % blocks) * kTile, j1 = std::min(D, j0 + kTile);
        const int64_t nj = j1 - j0;
        const scalar_t* xn = x + n * D * D;
        scalar_t* xon = xo + n * D * D;
        for (int64_t c = 0; c < nj; ++c) sumsq[c] = best[c] = acc_t(0);
        // Output column j reads input column D-1-j; in memory those are D-j1 .. D-1-j0 (contiguous).
        for (int64_t i = 0; i < D; ++i) {
          const scalar_t* row = xn + i * D;
          for (int64_t c = 0; c < nj; ++c) {
            const acc_t v = static_cast<acc_t>(row[D - 1 - (j0 + c)]);
            sumsq[c] += v * v;
            if (std::abs(v) > std::abs(best[c])) best[c] = v;  // first largest-magnitude entry wins ties
          }
        }
        for (int64_t c = 0; c < nj; ++c) {
          const acc_t sign = best[c] < acc_t(0) ? acc_t(-1) : acc_t(1);
          const acc_t norm = std::sqrt(sumsq[c]);
          scale[c] = (unit_norm && norm > acc_t(0)) ? sign / norm : sign;
          wo[n * D + j0 + c] = wp[n * D + D - 1 - (j0 + c)];
        }
        for (int64_t i = 0; i < D; ++i) {
          const scalar_t* row = xn + i * D;
          scalar_t* orow = xon + i * D;
          for (int64_t c = 0; c < nj; ++c) {
            orow[j0 + c] = static_cast<scalar_t>(static_cast<acc_t>(row[D - 1 - (j0 + c)]) * scale[c]);
          }
        }
      }
    });
  });
  return {wd, Xd};
}
