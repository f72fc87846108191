#include "soft_threshold.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "common/scalar_math.h"

// x: (n,) -> y: (n,), grid-stride loop with 64-bit indices; *nonfinite = 1 where some x is NaN or Inf (any thread
// may write it: every writer writes the same value)
template <typename scalar_t>
__global__ void soft_threshold_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y, int64_t n,
                                      at::opmath_type<scalar_t> tau, int* __restrict__ nonfinite) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  bool bad = false;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const acc_t v = static_cast<acc_t>(x[i]);
    bad |= !isfinite(v);
    y[i] = static_cast<scalar_t>(lowrankedit::shrink<acc_t>(v, tau));
  }
  if (bad) *nonfinite = 1;
}

std::pair<at::Tensor, bool> soft_threshold_cuda(const at::Tensor& X, double tau) {
  const c10::cuda::CUDAGuard guard(X.device());
  auto Y = at::empty_like(X, at::MemoryFormat::Contiguous);
  const int64_t n = X.numel();
  if (n == 0) return {Y, false};
  auto flag = at::zeros({}, X.options().dtype(at::kInt));
  const int threads = 256;
  const int64_t max_blocks = 65535;
  const int blocks = static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, max_blocks));
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "soft_threshold_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    soft_threshold_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
        X.const_data_ptr<scalar_t>(), Y.mutable_data_ptr<scalar_t>(), n, static_cast<acc_t>(tau),
        flag.mutable_data_ptr<int>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {Y, flag.item<int>() != 0};  // one host sync, as the separate scan had
}
