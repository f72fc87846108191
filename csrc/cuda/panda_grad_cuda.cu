#include "panda_grad.h"

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

namespace {

constexpr int kThreads = 256;

// Block-wide sum of one double per thread; thread 0 adds the block's total to *out (float64 atomicAdd, sm_60+).
__device__ __forceinline__ void block_sum_to(double v, double* out) {
  __shared__ double warp_sums[kThreads / 32];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < (kThreads / 32) ? warp_sums[lane] : 0.0;
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (lane == 0) atomicAdd(out, v);
  }
}

// z: (n,) -> *out += sum z^2 (float64 accumulator), grid-stride with 64-bit indices
template <typename scalar_t>
__global__ void panda_sumsq_kernel(const scalar_t* __restrict__ z, int64_t n, double* __restrict__ out) {
  double s = 0.0;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double v = static_cast<double>(z[i]);
    s += v * v;
  }
  block_sum_to(s, out);
}

// x, g: (n,) -> y = [max(0, .)](x - lr g), *dir += <g, y - x> (float64), one pass
template <typename scalar_t>
__global__ void panda_project_step_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ g,
                                          scalar_t* __restrict__ y, int64_t n, scalar_t lr, bool nonneg,
                                          double* __restrict__ dir) {
  double s = 0.0;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const scalar_t xi = x[i], gi = g[i];
    scalar_t v = xi - lr * gi;
    if (nonneg && v < scalar_t(0)) v = scalar_t(0);  // projection onto >= 0; NaN stays NaN
    y[i] = v;
    s += static_cast<double>(gi) * (static_cast<double>(v) - static_cast<double>(xi));
  }
  block_sum_to(s, dir);
}

int blocks_for(int64_t n) {
  const int64_t max_blocks = 4 * 132;  // enough to fill a large GPU; the grid-stride loop covers the rest
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, max_blocks)));
}

struct CudaBackend {
  static at::Tensor sumsq(const at::Tensor& Z) { return panda_sumsq_cuda(Z); }
  static std::tuple<at::Tensor, at::Tensor> project_step(const at::Tensor& X, const at::Tensor& G, double lr,
                                                         bool nonneg) {
    return panda_project_step_cuda(X, G, lr, nonneg);
  }
};

}  // namespace

at::Tensor panda_sumsq_cuda(const at::Tensor& Z) {
  const c10::cuda::CUDAGuard guard(Z.device());
  auto out = at::zeros({}, Z.options().dtype(at::kDouble));
  const int64_t n = Z.numel();
  if (n == 0) return out;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(Z.scalar_type(), "panda_sumsq_cuda", [&] {
    panda_sumsq_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(Z.const_data_ptr<scalar_t>(), n,
                                                                         out.mutable_data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> panda_project_step_cuda(const at::Tensor& X, const at::Tensor& G, double lr,
                                                           bool nonneg) {
  const c10::cuda::CUDAGuard guard(X.device());
  auto Y = at::empty_like(X, at::MemoryFormat::Contiguous);
  auto dir = at::zeros({}, X.options().dtype(at::kDouble));
  const int64_t n = X.numel();
  if (n == 0) return {Y, dir};
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "panda_project_step_cuda", [&] {
    panda_project_step_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        X.const_data_ptr<scalar_t>(), G.const_data_ptr<scalar_t>(), Y.mutable_data_ptr<scalar_t>(), n,
        static_cast<scalar_t>(lr), nonneg, dir.mutable_data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {Y, dir};
}

// The contraction runs as cuBLAS GEMMs on the current stream (see panda_grad.h).
std::tuple<at::Tensor, at::Tensor, at::Tensor> panda_grad_cuda(const at::Tensor& Z, const at::Tensor& A,
                                                               const at::Tensor& P) {
  const c10::cuda::CUDAGuard guard(Z.device());
  return lowrankedit::panda::grad<CudaBackend>(Z, A, P);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, double, double> panda_step_cuda(
    const at::Tensor& Z, const at::Tensor& A, const at::Tensor& P, double lr_parts, double lr_appearances,
    bool line_search, int64_t max_backtracks, const lowrankedit::panda::Reduce* reduce) {
  const c10::cuda::CUDAGuard guard(Z.device());
  return lowrankedit::panda::step<CudaBackend>(Z, A, P, lr_parts, lr_appearances, line_search, max_backtracks,
                                               reduce);
}
