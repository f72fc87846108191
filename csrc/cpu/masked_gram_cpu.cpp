#include "masked_gram.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>

// Route (benchmarked in bench/bench_masked_gram.py against the composed PyTorch expression):
//   G_in = sum_p w_p j_p j_p^T = A_in^T A_in with the rows a_p = sqrt(w_p) j_p, and likewise G_out with sqrt(1 - w_p).
// Walk J in tiles of T rows. Each tile is gathered into two small cache-resident buffers: A_in holds only the rows
// with w > 0, A_out only the rows with w < 1, each scaled by its square root weight (and widened to the accumulation
// type). BLAS GEMMs (at::addmm_) add the lower triangle of A^T A into that Gram's accumulator (three GEMMs over a
// 2x2 column split: 3/4 of the arithmetic of a full A^T A), mirrored once at the end. A region mask is 0 or 1
// almost everywhere, so almost every row lands in one buffer only: the two Grams cost about one GEMM over J,
// where `(J*w).mT @ J` and its complement cost two (and copy J twice). Rows with 0 < w < 1 go to both buffers, so
// dense soft weights save only the triangle's quarter. No weighted copy of the whole J is made, and G_out is summed
// from its own (1 - w) weights (never J^T J - G_in, which cancels catastrophically where w is close to 1).
// Parallelism: one parallel region. The work is cut into items (batch b, segment s of consecutive tiles), each with
// its own (2, D, D) accumulator, summed over segments at the end (deterministic: the result does not depend on which
// thread ran an item). Threads take items from an atomic counter, so a thread that the OS starves (a shared machine)
// does not hold the others up as a static split would; the GEMMs inside run single-threaded. Walking the tiles in
// order with MKL-threaded GEMMs instead (one parallel region per tile) was measured on the shared 2-core machine at
// 264 ms vs 136 ms for this route (B=4, P=4096, D=100, 2 threads, min of 9; single-threaded both are ~20 ms).

namespace {

// Rows per tile: the two gathered buffers stay around 512 KiB together (in L2, and far below J's size), at least
// 128 rows (so the (D, D) accumulators are read and written once per many rows), and never more rows than J has.
int64_t tile_rows(int64_t D, int64_t elem_size, int64_t P) {
  const int64_t budget = int64_t(512) << 10;
  int64_t T = budget / std::max<int64_t>(1, 2 * D * elem_size);
  T = std::max<int64_t>(128, std::min<int64_t>(4096, T));
  return std::min<int64_t>(P, (T / 16) * 16);
}

// G (D, D) += A^T A for A (n, D), lower triangle only (the upper one is mirrored at the end): with the columns split
// at h, the blocks (0,0), (1,0) and (1,1), three GEMMs with 3/4 of the arithmetic of one full A^T A (h = 0: one GEMM).
void add_lower_gram(at::Tensor& G, const at::Tensor& A, int64_t h) {
  if (h == 0) {
    G.addmm_(A.t(), A);
    return;
  }
  const int64_t D = A.size(1);
  const auto a0 = A.narrow(1, 0, h), a1 = A.narrow(1, h, D - h);
  G.narrow(0, 0, h).narrow(1, 0, h).addmm_(a0.t(), a0);
  G.narrow(0, h, D - h).narrow(1, 0, h).addmm_(a1.t(), a0);
  G.narrow(0, h, D - h).narrow(1, h, D - h).addmm_(a1.t(), a1);
}

// G (M, D, D) contiguous: copy the strict lower triangle onto the upper one in place (exactly symmetric, no
// temporaries), in 32x32 blocks so the transposed reads stay in cache.
void mirror_lower(at::Tensor G) {
  const int64_t M = G.size(0), D = G.size(1);
  constexpr int64_t kb = 32;
  AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "masked_gram_mirror", [&] {
    scalar_t* g = G.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, M, 1, [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m) {
        scalar_t* a = g + m * D * D;
        for (int64_t i0 = 0; i0 < D; i0 += kb) {
          for (int64_t j0 = i0; j0 < D; j0 += kb) {
            for (int64_t i = i0; i < std::min(i0 + kb, D); ++i) {
              for (int64_t j = std::max(j0, i + 1); j < std::min(j0 + kb, D); ++j) a[i * D + j] = a[j * D + i];
            }
          }
        }
      }
    });
  });
}

}  // namespace

// J: (B, P, D), w: (Bw, P) -> (G_in, G_out) each (B, D, D)
std::tuple<at::Tensor, at::Tensor> masked_gram_cpu(const at::Tensor& J, const at::Tensor& w) {
  const int64_t B = J.size(0), P = J.size(1), D = J.size(2);
  const int64_t Bw = w.size(0);
  const auto acc_type = at::toOpMathType(J.scalar_type());
  const auto opts = J.options().dtype(acc_type);
  if (B == 0 || D == 0 || P == 0) {
    return {at::zeros({B, D, D}, opts), at::zeros({B, D, D}, opts)};
  }
  const int64_t nthreads = std::max<int64_t>(1, at::get_num_threads());
  int64_t T = tile_rows(D, static_cast<int64_t>(c10::elementSize(acc_type)), P);
  int64_t ntiles = (P + T - 1) / T;
  // Few tiles and a batch that does not split evenly over the threads: cut the rows into a multiple of the thread
  // count instead, so no thread waits for another's last tile (measured: B=1, P=4096, D=100 on 2 threads had 3
  // tiles, one thread doing two of them).
  if (B % nthreads != 0 && ntiles % nthreads != 0 && ntiles < 8 * nthreads) {
    const int64_t want = (ntiles + nthreads - 1) / nthreads * nthreads;
    T = std::max<int64_t>(1, (P + want - 1) / want);
    ntiles = (P + T - 1) / T;
  }
  // Segments per batch entry: about 4 items per thread, at most one per tile, and the extra partial Grams under a
  // quarter of J's bytes and 64 MiB (the point of the op is to not need memory on the order of J).
  const int64_t acc_bytes = B * 2 * D * D * static_cast<int64_t>(c10::elementSize(acc_type));
  const int64_t spare = std::min<int64_t>(int64_t(64) << 20, J.numel() * static_cast<int64_t>(J.element_size()) / 4);
  const int64_t by_mem = 1 + spare / std::max<int64_t>(1, acc_bytes);
  int64_t S = std::max<int64_t>(1, std::min<int64_t>({ntiles, (4 * nthreads + B - 1) / B, by_mem}));
  // Few tiles: equal segments, S dividing the tile count (a multiple of the thread count here, see above), so the
  // threads get equal work (measured at B=1, P=4096, D=100, dense soft weights, 2 threads: 8 tiles in 6 segments
  // of 1 or 2 tiles took 1.22 ms, in 4 segments of 2 tiles 0.97-1.01 ms). Many tiles balance well as they are.
  if (ntiles < 8 * nthreads) {
    while (ntiles % S != 0) --S;
  }
  // Column split of the lower-triangle GEMMs (measured at D = 100, 2 threads: dense soft weights 1.03 -> 0.90 ms
  // at P = 4096, 16.0 -> 13.5 ms at P = 65536); below 64 columns one GEMM is faster.
  const int64_t h = D >= 64 ? (D / 2 + 15) / 16 * 16 : 0;
  // Partial sums of each Gram in its own tensor, so the outputs are two allocations with no copy at the end
  // (an operator's outputs never alias each other).
  auto acc_in = at::zeros({B, S, D, D}, opts), acc_out = at::zeros({B, S, D, D}, opts);
  std::atomic<int64_t> next_item{0};
  const int64_t items = B * S;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, J.scalar_type(), "masked_gram_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* j = J.const_data_ptr<scalar_t>();
    const acc_t* wp = w.const_data_ptr<acc_t>();
    at::parallel_for(0, std::min<int64_t>(nthreads, items), 1, [&](int64_t, int64_t) {
      auto buf_in = at::empty({T, D}, opts);   // rows sqrt(w) j_p, w > 0
      auto buf_out = at::empty({T, D}, opts);  // rows sqrt(1 - w) j_p, w < 1
      acc_t* pin = buf_in.mutable_data_ptr<acc_t>();
      acc_t* pout = buf_out.mutable_data_ptr<acc_t>();
      for (int64_t item = next_item.fetch_add(1); item < items; item = next_item.fetch_add(1)) {
        const int64_t b = item / S, s = item % S;
        const int64_t t0 = s * ntiles / S, t1 = (s + 1) * ntiles / S;
        const acc_t* wb = wp + (Bw == 1 ? 0 : b) * P;
        auto out_in = acc_in.select(0, b).select(0, s), out_out = acc_out.select(0, b).select(0, s);
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t r0 = t * T, rows = std::min<int64_t>(T, P - r0);
          int64_t n_in = 0, n_out = 0;
          for (int64_t r = 0; r < rows; ++r) {
            const acc_t wi = wb[r0 + r];
            const scalar_t* src = j + (b * P + r0 + r) * D;
            if (wi > acc_t(0)) {
              const acc_t si = std::sqrt(wi);
              acc_t* dst = pin + n_in++ * D;
              for (int64_t d = 0; d < D; ++d) dst[d] = si * static_cast<acc_t>(src[d]);
            }
            if (wi < acc_t(1)) {
              const acc_t so = std::sqrt(acc_t(1) - wi);
              acc_t* dst = pout + n_out++ * D;
              for (int64_t d = 0; d < D; ++d) dst[d] = so * static_cast<acc_t>(src[d]);
            }
          }
          if (n_in > 0) add_lower_gram(out_in, buf_in.narrow(0, 0, n_in), h);
          if (n_out > 0) add_lower_gram(out_out, buf_out.narrow(0, 0, n_out), h);
        }
      }
    });
  });

  auto G_in = S == 1 ? acc_in.select(1, 0) : acc_in.sum(1);  // (B, D, D), contiguous either way
  auto G_out = S == 1 ? acc_out.select(1, 0) : acc_out.sum(1);
  mirror_lower(G_in);
  mirror_lower(G_out);
  return {G_in, G_out};
}
