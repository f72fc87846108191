#include "generalized_eigh.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

namespace {

constexpr int kTile = 32;
constexpr int kRows = 8;  // a (32, 8) thread block moves a 32 x 32 tile, 4 rows per thread
constexpr int64_t kMaxBlocks = 65535;

// B: (N, D, D) -> shift: (N,) = tau * tr(B[n]); one block per batch element (grid-stride), block reduction.
template <typename scalar_t>
__global__ void trace_shift_kernel(const scalar_t* __restrict__ b, at::opmath_type<scalar_t>* __restrict__ shift,
                                   int64_t N, int64_t D, double tau) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ double partial[256];
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    double s = 0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) s += static_cast<double>(b[n * D * D + i * D + i]);
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half >>= 1) {
      if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
      __syncthreads();
    }
    if (threadIdx.x == 0) shift[n] = static_cast<acc_t>(tau * partial[0]);
    __syncthreads();
  }
}

// A, B: (N, D, D) -> As = (A + A^T)/2, Bs = (B + B^T)/2 + shift[n] I. Tiles of 32 x 32 staged through shared
// memory so the transposed read is coalesced; grid-stride over (n, tile row, tile col) with 64-bit indices.
template <typename scalar_t>
__global__ void symmetrize_shift_kernel(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                                        const at::opmath_type<scalar_t>* __restrict__ shift,
                                        scalar_t* __restrict__ as, scalar_t* __restrict__ bs, int64_t N, int64_t D) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t ta[kTile][kTile + 1];
  __shared__ acc_t tb[kTile][kTile + 1];
  const int64_t tiles = (D + kTile - 1) / kTile;
  const int64_t total = N * tiles * tiles;
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int64_t t = blockIdx.x; t < total; t += gridDim.x) {
    const int64_t n = t / (tiles * tiles);
    const int64_t ti = (t / tiles) % tiles, tj = t % tiles;
    const int64_t off = n * D * D;
    // Stage the mirrored tile: rows tj*32.., cols ti*32.. (coalesced along tx).
    for (int k = ty; k < kTile; k += kRows) {
      const int64_t r = tj * kTile + k, c = ti * kTile + tx;
      if (r < D && c < D) {
        ta[k][tx] = static_cast<acc_t>(a[off + r * D + c]);
        tb[k][tx] = static_cast<acc_t>(b[off + r * D + c]);
      }
    }
    __syncthreads();
    for (int k = ty; k < kTile; k += kRows) {
      const int64_t i = ti * kTile + k, j = tj * kTile + tx;
      if (i < D && j < D) {
        const int64_t ij = off + i * D + j;
        // (A^T)[i, j] = A[j, i] = ta[j - tj*32][i - ti*32] = ta[tx][k]
        const acc_t av = (static_cast<acc_t>(a[ij]) + ta[tx][k]) * acc_t(0.5);
        acc_t bv = (static_cast<acc_t>(b[ij]) + tb[tx][k]) * acc_t(0.5);
        if (i == j) bv += shift[n];
        as[ij] = static_cast<scalar_t>(av);
        bs[ij] = static_cast<scalar_t>(bv);
      }
    }
    __syncthreads();
  }
}

// X: (N, D, D), w: (N, D) -> scale: (N, D), wd: (N, D). One thread per output column j (input column D-1-j);
// neighbouring threads read neighbouring addresses of each row, so the row walk is coalesced.
template <typename scalar_t>
__global__ void column_scale_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ w,
                                    at::opmath_type<scalar_t>* __restrict__ scale, scalar_t* __restrict__ wd,
                                    int64_t N, int64_t D, bool unit_norm) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < N * D; t += stride) {
    const int64_t n = t / D, j = t % D, src = D - 1 - j;
    const scalar_t* xn = x + n * D * D;
    acc_t sumsq = 0, best = 0;
    for (int64_t i = 0; i < D; ++i) {
      const acc_t v = static_cast<acc_t>(xn[i * D + src]);
      sumsq += v * v;
      if (fabs(v) > fabs(best)) best = v;  // first largest-magnitude entry wins ties
    }
    const acc_t sign = best < acc_t(0) ? acc_t(-1) : acc_t(1);
    const acc_t norm = sqrt(sumsq);
    scale[t] = (unit_norm && norm > acc_t(0)) ? sign / norm : sign;
    wd[t] = w[n * D + src];
  }
}

// X: (N, D, D), scale: (N, D) -> Xd[n, i, j] = X[n, i, D-1-j] * scale[n, j]; grid-stride, 64-bit indices.
template <typename scalar_t>
__global__ void reverse_scale_kernel(const scalar_t* __restrict__ x, const at::opmath_type<scalar_t>* __restrict__ scale,
                                     scalar_t* __restrict__ xd, int64_t N, int64_t D) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = N * D * D;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total; t += stride) {
    const int64_t j = t % D, row = t / D, n = row / D;
    xd[t] = static_cast<scalar_t>(static_cast<acc_t>(x[row * D + (D - 1 - j)]) * scale[n * D + j]);
  }
}

int blocks_for(int64_t n, int threads) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, kMaxBlocks)));
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> generalized_eigh_prepare_cuda(const at::Tensor& A, const at::Tensor& B,
                                                                 double tau) {
  const c10::cuda::CUDAGuard guard(A.device());
  auto As = at::empty_like(A, at::MemoryFormat::Contiguous);
  auto Bs = at::empty_like(B, at::MemoryFormat::Contiguous);
  const int64_t N = A.size(0), D = A.size(1);
  if (N == 0 || D == 0) return {As, Bs};
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "generalized_eigh_prepare_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto shift = at::empty({N}, A.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    trace_shift_kernel<scalar_t><<<static_cast<int>(std::min<int64_t>(N, kMaxBlocks)), 256, 0, stream>>>(
        B.const_data_ptr<scalar_t>(), shift.mutable_data_ptr<acc_t>(), N, D, tau);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int64_t tiles = (D + kTile - 1) / kTile;
    const int blocks = static_cast<int>(std::min<int64_t>(N * tiles * tiles, kMaxBlocks));
    symmetrize_shift_kernel<scalar_t><<<blocks, dim3(kTile, kRows), 0, stream>>>(
        A.const_data_ptr<scalar_t>(), B.const_data_ptr<scalar_t>(), shift.const_data_ptr<acc_t>(),
        As.mutable_data_ptr<scalar_t>(), Bs.mutable_data_ptr<scalar_t>(), N, D);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {As, Bs};
}

std::tuple<at::Tensor, at::Tensor> generalized_eigh_finalize_cuda(const at::Tensor& w, const at::Tensor& X,
                                                                  bool unit_norm) {
  const c10::cuda::CUDAGuard guard(X.device());
  auto wd = at::empty_like(w, at::MemoryFormat::Contiguous);
  auto Xd = at::empty_like(X, at::MemoryFormat::Contiguous);
  const int64_t N = X.size(0), D = X.size(1);
  if (N == 0 || D == 0) return {wd, Xd};
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "generalized_eigh_finalize_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto scale = at::empty({N, D}, X.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    const int threads = 128;
    column_scale_kernel<scalar_t><<<blocks_for(N * D, threads), threads, 0, stream>>>(
        X.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(), scale.mutable_data_ptr<acc_t>(),
        wd.mutable_data_ptr<scalar_t>(), N, D, unit_norm);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    reverse_scale_kernel<scalar_t><<<blocks_for(N * D * D, 256), 256, 0, stream>>>(
        X.const_data_ptr<scalar_t>(), scale.const_data_ptr<acc_t>(), Xd.mutable_data_ptr<scalar_t>(), N, D);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {wd, Xd};
}
