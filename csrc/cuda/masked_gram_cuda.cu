#include "masked_gram.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <limits>

// One pass over J computes both Grams: each block owns one 64x64 tile (ti, tj), ti <= tj, of the upper triangle of
// G_in and G_out for one batch entry and one split of the rows. Per step it stages KT rows of J's column tiles ti and
// tj in shared memory, weighting the ti tile by w and by (1 - w) while loading (no weighted copy of J in global
// memory; G_out never formed as J^T J - G_in), and every thread accumulates a 4x4 piece of both Grams in registers.
// Row splits write their own slice of a partial buffer (deterministic, no atomics), summed afterwards; the lower
// triangle is mirrored from the upper one.

namespace {

constexpr int kTile = 64;     // output tile edge
constexpr int kRows = 16;     // rows of J staged per step
constexpr int kThreads = 256; // 16 x 16 threads, each owning a 4 x 4 piece (strided by 16) of both output tiles
constexpr int kMinRowsPerSplit = 256;

// J: (B, P, D), w: (Bw, P) -> part: (S, B, 2, D, D), upper-triangle tiles only; grid (ntri, B, S)
template <typename scalar_t, typename acc_t>
__global__ void masked_gram_kernel(const scalar_t* __restrict__ J, const acc_t* __restrict__ w,
                                   acc_t* __restrict__ part, int64_t B, int64_t P, int64_t D, int64_t Bw,
                                   int64_t rows_per_split, int64_t ntiles) {
  __shared__ acc_t a_in[kRows][kTile];
  __shared__ acc_t a_out[kRows][kTile];
  __shared__ acc_t bt[kRows][kTile];

  // Linear block index -> (ti, tj) with ti <= tj.
  int64_t k = blockIdx.x, ti = 0;
  while (k >= ntiles - ti) {
    k -= ntiles - ti;
    ++ti;
  }
  const int64_t tj = ti + k;
  const int64_t b = blockIdx.y, s = blockIdx.z;
  const int64_t p_begin = s * rows_per_split;
  const int64_t p_end = (p_begin + rows_per_split < P) ? p_begin + rows_per_split : P;
  const scalar_t* Jb = J + b * P * D;
  const acc_t* wb = w + (Bw == 1 ? 0 : b) * P;

  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  acc_t c_in[4][4], c_out[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) c_in[i][j] = c_out[i][j] = acc_t(0);

  for (int64_t p0 = p_begin; p0 < p_end; p0 += kRows) {
#pragma unroll
    for (int e = threadIdx.x; e < kRows * kTile; e += kThreads) {
      const int r = e / kTile, c = e % kTile;
      const int64_t p = p0 + r;
      const int64_t ca = ti * kTile + c, cb = tj * kTile + c;
      const bool row_ok = p < p_end;
      const acc_t wv = row_ok ? wb[p] : acc_t(0);
      const acc_t xa = (row_ok && ca < D) ? static_cast<acc_t>(Jb[p * D + ca]) : acc_t(0);
      const acc_t xb = (row_ok && cb < D) ? static_cast<acc_t>(Jb[p * D + cb]) : acc_t(0);
      a_in[r][c] = wv * xa;
      a_out[r][c] = (acc_t(1) - wv) * xa;
      bt[r][c] = xb;
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      acc_t ai[4], ao[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        ai[i] = a_in[r][ty + 16 * i];
        ao[i] = a_out[r][ty + 16 * i];
        bv[i] = bt[r][tx + 16 * i];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          c_in[i][j] += ai[i] * bv[j];
          c_out[i][j] += ao[i] * bv[j];
        }
    }
    __syncthreads();
  }

  acc_t* g_in = part + ((s * B + b) * 2 + 0) * D * D;
  acc_t* g_out = part + ((s * B + b) * 2 + 1) * D * D;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t row = ti * kTile + ty + 16 * i;
    if (row >= D) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t col = tj * kTile + tx + 16 * j;
      if (col >= D) continue;
      g_in[row * D + col] = c_in[i][j];
      g_out[row * D + col] = c_out[i][j];
    }
  }
}

}  // namespace

// J: (B, P, D), w: (Bw, P) -> (G_in, G_out) each (B, D, D)
std::tuple<at::Tensor, at::Tensor> masked_gram_cuda(const at::Tensor& J, const at::Tensor& w) {
  const c10::cuda::CUDAGuard guard(J.device());
  const int64_t B = J.size(0), P = J.size(1), D = J.size(2);
  const int64_t Bw = w.size(0);
  const auto acc_type = at::toOpMathType(J.scalar_type());
  const auto opts = J.options().dtype(acc_type);
  if (B == 0 || D == 0 || P == 0) {
    return {at::zeros({B, D, D}, opts), at::zeros({B, D, D}, opts)};
  }
  const int64_t ntiles = (D + kTile - 1) / kTile;
  const int64_t ntri = ntiles * (ntiles + 1) / 2;
  TORCH_CHECK(B <= 65535, "masked_gram: batch size ", B, " exceeds the CUDA grid limit 65535; split the batch");
  // Split the rows so the grid fills the GPU (about 4 blocks per SM), keeping >= kMinRowsPerSplit rows per split
  // and the partial buffer under 256 MiB.
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t want = (4 * sms + ntri * B - 1) / (ntri * B);
  const int64_t by_rows = std::max<int64_t>(1, P / kMinRowsPerSplit);
  const int64_t by_mem = std::max<int64_t>(
      1, (int64_t(256) << 20) / std::max<int64_t>(1, B * 2 * D * D * int64_t(c10::elementSize(acc_type))));
  const int64_t S = std::max<int64_t>(1, std::min<int64_t>({want, by_rows, by_mem, int64_t(65535)}));
  const int64_t rows_per_split = (P + S - 1) / S;
  auto part = at::zeros({S, B, 2, D, D}, opts);
  TORCH_CHECK(ntri <= std::numeric_limits<int32_t>::max(), "masked_gram: D = ", D, " is too large for the grid");
  const dim3 grid(static_cast<unsigned>(ntri), static_cast<unsigned>(B), static_cast<unsigned>(S));
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, J.scalar_type(), "masked_gram_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    masked_gram_kernel<scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(
        J.const_data_ptr<scalar_t>(), w.const_data_ptr<acc_t>(), part.mutable_data_ptr<acc_t>(), B, P, D, Bw,
        rows_per_split, ntiles);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  auto G = S == 1 ? part.select(0, 0) : part.sum(0);  // (B, 2, D, D), upper triangle valid
  auto upper = G.triu();
  G = upper + upper.triu(1).mT();
  // two contiguous outputs that share no memory (with B = 1 both selects are contiguous views of G)
  return {G.select(1, 0).contiguous(), G.select(1, 1).clone(at::MemoryFormat::Contiguous)};
}
