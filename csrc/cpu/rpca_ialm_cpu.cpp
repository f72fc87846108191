// The (n, n) passes of rpca_ialm on the upper tiles of its symmetric matrices (see rpca_ialm_passes.h).
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define LOWRANKEDIT_X86 1
#endif

#include "rpca_ialm_passes.h"

namespace lowrankedit {

namespace {

// 128 x 128 float64 tiles (128 KiB): one tile, its L tile and the p-column panels it multiplies stay in L2.
constexpr int64_t kTile = 128;
// Work is split into a fixed number of slots (tile t goes to slot t % kSlots, each slot in order), so partial sums
// and product accumulators do not depend on the thread count; threads take the next free slot, so one thread
// slowed down by other jobs on a shared machine does not hold the others at the end of every pass.
constexpr int64_t kSlots = 16;
// Row stride of a packed tile copy: 136 doubles (1088 B), so consecutive rows fall in different L1 sets.
constexpr int64_t kPackedLd = 136;

struct Tile {
  int64_t i0, rows, j0, cols;
  bool diagonal;
};

std::vector<Tile> upper_tiles(int64_t n) {
  std::vector<Tile> tiles;
  for (int64_t i0 = 0; i0 < n; i0 += kTile) {
    for (int64_t j0 = i0; j0 < n; j0 += kTile) {
      tiles.push_back({i0, std::min(kTile, n - i0), j0, std::min(kTile, n - j0), i0 == j0});
    }
  }
  return tiles;
}

// f(slot, tile index, tile) for every upper tile, slots in parallel.
template <typename F>
void for_each_upper_tile(const std::vector<Tile>& tiles, const F& f) {
  const int64_t count = static_cast<int64_t>(tiles.size());
  std::atomic<int64_t> next{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), kSlots));
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t s = next.fetch_add(1); s < kSlots; s = next.fetch_add(1)) {
      for (int64_t t = s; t < count; t += kSlots) f(s, t, tiles[static_cast<size_t>(t)]);
    }
  });
}

// C (m x nc, row stride ldc) += op(A) (m x k) B (k x nc, row stride ldb), op(A)(r, q) = A[r lda + q] or, with
// kTrans, A[q lda + r] (the tile read as its transpose, without copying it).
template <bool kTrans>
void gemm_acc_scalar(int64_t m, int64_t nc, int64_t k, const double* A, int64_t lda, const double* B, int64_t ldb,
                     double* C, int64_t ldc) {
  for (int64_t r = 0; r < m; ++r) {
    double* c = C + r * ldc;
    for (int64_t q = 0; q < k; ++q) {
      const double a = kTrans ? A[q * lda + r] : A[r * lda + q];
      const double* b = B + q * ldb;
      for (int64_t j = 0; j < nc; ++j) c[j] += a * b[j];
    }
  }
}

#ifdef LOWRANKEDIT_X86
// R x (4 CV) register block with R CV = 12 accumulators: with the CV loads of B and the broadcast of A that is 16
// ymm registers, so nothing spills to the stack inside the q loop (the loops are unrolled so the accumulators are
// named registers), and 12 independent FMAs cover their latency.
template <bool kTrans, int R, int CV>
__attribute__((target("avx2,fma"))) inline void micro(int64_t k, const double* A, int64_t lda, const double* B,
                                                      int64_t ldb, double* C, int64_t ldc) {
  __m256d acc[R][CV];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 3
    for (int c = 0; c < CV; ++c) acc[r][c] = _mm256_loadu_pd(C + r * ldc + 4 * c);
  for (int64_t q = 0; q < k; ++q) {
    __m256d b[CV];
#pragma GCC unroll 3
    for (int c = 0; c < CV; ++c) b[c] = _mm256_loadu_pd(B + q * ldb + 4 * c);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      const __m256d a = _mm256_broadcast_sd(kTrans ? A + q * lda + r : A + r * lda + q);
#pragma GCC unroll 3
      for (int c = 0; c < CV; ++c) acc[r][c] = _mm256_fmadd_pd(a, b[c], acc[r][c]);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 3
    for (int c = 0; c < CV; ++c) _mm256_storeu_pd(C + r * ldc + 4 * c, acc[r][c]);
}

// One panel of 4 CV columns of B and C, all m rows: blocks of R = 12 / CV rows, then single rows.
template <bool kTrans, int CV>
__attribute__((target("avx2,fma"))) void column_panel(int64_t m, int64_t k, const double* A, int64_t lda,
                                                      const double* B, int64_t ldb, double* C, int64_t ldc) {
  constexpr int R = 12 / CV;
  int64_t r0 = 0;
  for (; r0 + R <= m; r0 += R) {
    micro<kTrans, R, CV>(k, kTrans ? A + r0 : A + r0 * lda, lda, B, ldb, C + r0 * ldc, ldc);
  }
  for (; r0 < m; ++r0) micro<kTrans, 1, CV>(k, kTrans ? A + r0 : A + r0 * lda, lda, B, ldb, C + r0 * ldc, ldc);
}

// Columns in panels of 12, 8 and 4 (each panel reads A once), the last nc % 4 in scalar code.
template <bool kTrans>
__attribute__((target("avx2,fma"))) void gemm_acc_avx2(int64_t m, int64_t nc, int64_t k, const double* A,
                                                       int64_t lda, const double* B, int64_t ldb, double* C,
                                                       int64_t ldc) {
  int64_t c0 = 0;
  for (; c0 + 12 <= nc; c0 += 12) column_panel<kTrans, 3>(m, k, A, lda, B + c0, ldb, C + c0, ldc);
  if (c0 + 8 <= nc) {
    column_panel<kTrans, 2>(m, k, A, lda, B + c0, ldb, C + c0, ldc);
    c0 += 8;
  }
  if (c0 + 4 <= nc) {
    column_panel<kTrans, 1>(m, k, A, lda, B + c0, ldb, C + c0, ldc);
    c0 += 4;
  }
  if (c0 < nc) gemm_acc_scalar<kTrans>(m, nc - c0, k, A, lda, B + c0, ldb, C + c0, ldc);
}

bool has_avx2_fma() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#endif

template <bool kTrans>
void gemm_acc(int64_t m, int64_t nc, int64_t k, const double* A, int64_t lda, const double* B, int64_t ldb,
              double* C, int64_t ldc) {
#ifdef LOWRANKEDIT_X86
  if (has_avx2_fma()) return gemm_acc_avx2<kTrans>(m, nc, k, A, lda, B, ldb, C, ldc);
#endif
  gemm_acc_scalar<kTrans>(m, nc, k, A, lda, B, ldb, C, ldc);
}

// shrink (common/scalar_math.h) written without a branch, so the passes vectorize and do not mispredict on the
// sparse pattern: v - clamp(v, -thr, thr) equals it bit for bit on finite input (M is checked finite).
inline double shrink_clamped(double v, double thr) { return v - std::max(-thr, std::min(v, thr)); }

// The L = A Bt tile at (i0, j0) into buf (row stride kTile); zero when the factors are empty.
void low_rank_tile(const Tile& t, const at::Tensor& A, const at::Tensor& Bt, double* buf) {
  for (int64_t i = 0; i < t.rows; ++i) std::fill(buf + i * kTile, buf + i * kTile + t.cols, 0.0);
  const int64_t r = A.defined() ? A.size(1) : 0;
  if (r == 0) return;
  const int64_t n = Bt.size(1);
  gemm_acc<false>(t.rows, t.cols, r, A.const_data_ptr<double>() + t.i0 * r, r, Bt.const_data_ptr<double>() + t.j0,
                  n, buf, kTile);
}

// A (n, r) and Bt (r, n) as contiguous float64 (undefined or r = 0: L = 0).
std::pair<at::Tensor, at::Tensor> contiguous_factors(const at::Tensor& A, const at::Tensor& Bt) {
  if (!A.defined() || A.size(1) == 0) return {at::Tensor(), at::Tensor()};
  return {A.to(at::kDouble).contiguous(), Bt.to(at::kDouble).contiguous()};
}

// scratch (float64 CPU, kept by the caller across calls) grown to hold count doubles: the passes and products
// run every iteration, and a fresh buffer each time would cost page faults.
double* scratch_of(at::Tensor& scratch, int64_t count) {
  if (!scratch.defined() || scratch.numel() < count) {
    scratch = at::empty({count}, at::TensorOptions().dtype(at::kDouble).device(at::kCPU));
  }
  return scratch.mutable_data_ptr<double>();
}

}  // namespace

void rpca_ialm_sparse_step_cpu(const at::Tensor& M, const at::Tensor& Y, at::Tensor& S, at::Tensor& X,
                               double inv_mu, double thr, double alpha) {
  const int64_t n = M.size(0);
  const double* m = M.const_data_ptr<double>();
  const double* y = Y.const_data_ptr<double>();
  double* s = S.mutable_data_ptr<double>();
  double* x = X.mutable_data_ptr<double>();
  for_each_upper_tile(upper_tiles(n), [&](int64_t, int64_t, const Tile& t) {
    for (int64_t i = t.i0; i < t.i0 + t.rows; ++i) {
      for (int64_t k = i * n + t.j0, end = k + t.cols; k < end; ++k) {
        const double tk = m[k] + y[k] * inv_mu;
        const double sk = shrink_clamped(tk, thr);
        s[k] = sk;
        x[k] = tk - alpha * sk - (1.0 - alpha) * m[k];
      }
    }
  });
}

double rpca_ialm_merged_step_cpu(const at::Tensor& M, const at::Tensor& S, at::Tensor& Y, at::Tensor& S_next,
                                 at::Tensor& X, const at::Tensor& A_in, const at::Tensor& Bt_in, double mu,
                                 double inv_mu_next, double thr_next, double alpha, at::Tensor& scratch) {
  const int64_t n = M.size(0);
  const auto [A, Bt] = contiguous_factors(A_in, Bt_in);
  const auto tiles = upper_tiles(n);
  std::vector<double> partial(tiles.size(), 0.0);
  double* buffers = scratch_of(scratch, kSlots * kTile * kTile);
  const double* m = M.const_data_ptr<double>();
  const double* s = S.const_data_ptr<double>();
  double* y = Y.mutable_data_ptr<double>();
  double* sn = S_next.mutable_data_ptr<double>();
  double* x = X.mutable_data_ptr<double>();
  for_each_upper_tile(tiles, [&](int64_t slot, int64_t index, const Tile& t) {
    double* lt = buffers + slot * kTile * kTile;
    low_rank_tile(t, A, Bt, lt);
    double z2 = 0.0;
    for (int64_t i = 0; i < t.rows; ++i) {
      const double* l = lt + i * kTile;
      const int64_t row = (t.i0 + i) * n + t.j0;
      for (int64_t j = 0; j < t.cols; ++j) {
        const int64_t k = row + j;
        const double z = m[k] - l[j] - s[k];
        const double yk = mu * (x[k] - l[j]);
        const double tk = m[k] + yk * inv_mu_next;
        const double sk = shrink_clamped(tk - l[j], thr_next);
        y[k] = yk;
        sn[k] = sk;
        x[k] = tk - alpha * sk - (1.0 - alpha) * (m[k] - l[j]);
        z2 += z * z;
      }
    }
    partial[static_cast<size_t>(index)] = t.diagonal ? z2 : 2 * z2;  // an off-diagonal tile stands for two
  });
  double z2 = 0.0;
  for (const double v : partial) z2 += v;
  return z2;
}

void rpca_ialm_last_argument_cpu(const at::Tensor& Y, at::Tensor& X, const at::Tensor& A_in, const at::Tensor& Bt_in,
                                 double inv_mu, at::Tensor& scratch) {
  const int64_t n = Y.size(0);
  const auto [A, Bt] = contiguous_factors(A_in, Bt_in);
  double* buffers = scratch_of(scratch, kSlots * kTile * kTile);
  const double* y = Y.const_data_ptr<double>();
  double* x = X.mutable_data_ptr<double>();
  for_each_upper_tile(upper_tiles(n), [&](int64_t slot, int64_t, const Tile& t) {
    double* lt = buffers + slot * kTile * kTile;
    low_rank_tile(t, A, Bt, lt);
    for (int64_t i = 0; i < t.rows; ++i) {
      const int64_t row = (t.i0 + i) * n + t.j0;
      for (int64_t j = 0; j < t.cols; ++j) x[row + j] = lt[i * kTile + j] + y[row + j] * inv_mu;
    }
  });
}

at::Tensor rpca_ialm_symmetric_apply_cpu(const at::Tensor& X, const at::Tensor& V, at::Tensor& scratch) {
  const int64_t n = X.size(0), p = V.size(1);
  const int64_t P = (p + 3) / 4 * 4;  // padded to whole vector registers
  double* v = scratch_of(scratch, (kSlots + 1) * n * P + kSlots * kTile * kPackedLd);
  auto Vp = at::from_blob(v, {n, P}, X.options());
  Vp.narrow(1, p, P - p).zero_();
  Vp.narrow(1, 0, p).copy_(V);
  auto acc = at::from_blob(v + n * P, {kSlots, n, P}, X.options());
  acc.zero_();
  const double* x = X.const_data_ptr<double>();
  double* out = acc.mutable_data_ptr<double>();
  double* packed = v + (kSlots + 1) * n * P;
  for_each_upper_tile(upper_tiles(n), [&](int64_t slot, int64_t, const Tile& t) {
    double* o = out + slot * n * P;
    // Both products read the tile from an L2-resident copy: read in place, rows n apart alias in the L1 whenever
    // n * 8 is a multiple of 4096 (n = 9216 is), and the transposed product walks those rows.
    double* tile = packed + slot * kTile * kPackedLd;
    for (int64_t i = 0; i < t.rows; ++i) {
      std::copy_n(x + (t.i0 + i) * n + t.j0, t.cols, tile + i * kPackedLd);
    }
    gemm_acc<false>(t.rows, P, t.cols, tile, kPackedLd, v + t.j0 * P, P, o + t.i0 * P, P);  // X_IJ V_J
    if (!t.diagonal) {
      gemm_acc<true>(t.cols, P, t.rows, tile, kPackedLd, v + t.i0 * P, P, o + t.j0 * P, P);  // X_IJ^T V_I
    }
  });
  auto result = acc[0].clone();
  for (int64_t s = 1; s < kSlots; ++s) result.add_(acc[s]);  // fixed order
  return result.narrow(1, 0, p).contiguous();
}

void rpca_ialm_mirror_upper_cpu(at::Tensor& T) {
  const int64_t n = T.size(0);
  double* a = T.mutable_data_ptr<double>();
  for_each_upper_tile(upper_tiles(n), [&](int64_t, int64_t, const Tile& t) {
    for (int64_t i = t.i0; i < t.i0 + t.rows; ++i) {
      for (int64_t j = std::max(t.j0, i + 1); j < t.j0 + t.cols; ++j) a[j * n + i] = a[i * n + j];
    }
  });
}

}  // namespace lowrankedit
