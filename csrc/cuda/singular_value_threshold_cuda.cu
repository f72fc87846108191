#include "singular_value_threshold.h"

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "common/scalar_math.h"

// values: (B, n), tau: (B,) -> shrunk: (B, n), survivors: (B,). One block per batch row, block-stride over n,
// survivors counted with a shared-memory reduction (n is a matrix side, so one block per row is plenty).
template <typename scalar_t>
__global__ void svt_spectrum_kernel(const scalar_t* __restrict__ v, const double* __restrict__ tau,
                                    scalar_t* __restrict__ w, int64_t* __restrict__ survivors, int64_t n) {
  __shared__ int64_t partial[256];
  const int64_t b = blockIdx.x;
  const scalar_t tb = static_cast<scalar_t>(tau[b]);
  int64_t c = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const int64_t k = b * n + i;
    const scalar_t s = lowrankedit::shrink<scalar_t>(v[k], tb);
    w[k] = s;
    c += (s != scalar_t(0));
  }
  partial[threadIdx.x] = c;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) survivors[b] = partial[0];
}

std::tuple<at::Tensor, at::Tensor> svt_spectrum_cuda(const at::Tensor& values, const at::Tensor& tau) {
  const c10::cuda::CUDAGuard guard(values.device());
  const int64_t B = values.size(0);
  const int64_t n = values.size(1);
  auto shrunk = at::empty_like(values, at::MemoryFormat::Contiguous);
  auto survivors = at::zeros({B}, values.options().dtype(at::kLong));
  if (B == 0 || n == 0) return {shrunk, survivors};
  TORCH_CHECK(B <= 2147483647LL, "singular_value_threshold: too many batch entries for one launch, got ", B);
  const int threads = 256;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "svt_spectrum_cuda", [&] {
    svt_spectrum_kernel<scalar_t><<<static_cast<unsigned int>(B), threads, 0, stream>>>(
        values.const_data_ptr<scalar_t>(), tau.const_data_ptr<double>(), shrunk.mutable_data_ptr<scalar_t>(),
        survivors.mutable_data_ptr<int64_t>(), n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {shrunk, survivors};
}
