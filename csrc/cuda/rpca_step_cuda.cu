#include "rpca_step.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

#include "common/scalar_math.h"

namespace {
constexpr int kThreads = 256;

// grid (blocks_x, B): block (x, b) strides over entry b's N elements; each block writes its two partial sums
// to partial[b, x, 0..1] (summed afterwards in a fixed order, so the result does not depend on scheduling).
// M, L: (B, N); S, Y, A: (B, N) in place; mu, lamb, mu_next, alpha: (B,) f64; active: (B,) -> partial (B, blocks_x, 2)
template <typename scalar_t>
__global__ void rpca_step_kernel(const scalar_t* __restrict__ m, const scalar_t* __restrict__ l,
                                 scalar_t* __restrict__ s, scalar_t* __restrict__ y, scalar_t* __restrict__ a,
                                 const double* __restrict__ mu, const double* __restrict__ lamb,
                                 const double* __restrict__ mu_next, const bool* __restrict__ active,
                                 const double* __restrict__ alpha, double* __restrict__ partial, int64_t N) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ double sh_r[kThreads];
  __shared__ double sh_d[kThreads];
  const int64_t b = blockIdx.y;
  double r2 = 0.0, ds2 = 0.0;
  if (active[b]) {
    const acc_t mub = static_cast<acc_t>(mu[b]);
    const acc_t inv_mu = acc_t(1) / mub;
    const acc_t thr = static_cast<acc_t>(lamb[b]) * inv_mu;
    const acc_t inv_mun = acc_t(1) / static_cast<acc_t>(mu_next[b]);
    const acc_t alb = static_cast<acc_t>(alpha[b]);
    const int64_t base = b * N;
    const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
    for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < N; j += stride) {
      const int64_t i = base + j;
      const acc_t mi = static_cast<acc_t>(m[i]);
      const acc_t li = static_cast<acc_t>(l[i]);
      const acc_t yi = static_cast<acc_t>(y[i]);
      const acc_t s_old = static_cast<acc_t>(s[i]);
      acc_t s_new, y_new, a_new, d;
      const acc_t r = lowrankedit::rpca_entry<acc_t>(mi, li, yi, s_old, mub, inv_mu, thr, inv_mun, alb, s_new, y_new,
                                                     a_new, d);
      s[i] = static_cast<scalar_t>(s_new);
      y[i] = static_cast<scalar_t>(y_new);
      a[i] = static_cast<scalar_t>(a_new);
      const double dr = static_cast<double>(r), dd = static_cast<double>(d);
      r2 += dr * dr;
      ds2 += dd * dd;
    }
  }
  sh_r[threadIdx.x] = r2;
  sh_d[threadIdx.x] = ds2;
  __syncthreads();
  for (int st = blockDim.x / 2; st > 0; st >>= 1) {
    if (threadIdx.x < st) {
      sh_r[threadIdx.x] += sh_r[threadIdx.x + st];
      sh_d[threadIdx.x] += sh_d[threadIdx.x + st];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const int64_t o = (b * gridDim.x + blockIdx.x) * 2;
    partial[o] = sh_r[0];
    partial[o + 1] = sh_d[0];
  }
}
}  // namespace

at::Tensor rpca_step_cuda(const at::Tensor& M, const at::Tensor& L, at::Tensor& S, at::Tensor& Y, at::Tensor& A,
                          const at::Tensor& mu, const at::Tensor& lamb, const at::Tensor& mu_next,
                          const at::Tensor& active, const at::Tensor& alpha) {
  const c10::cuda::CUDAGuard guard(M.device());
  const int64_t B = M.size(0);
  const int64_t N = M.size(1);
  if (B == 0 || N == 0) return at::zeros({B, 2}, M.options().dtype(at::kDouble));
  TORCH_CHECK(B <= 65535, "rpca_step: expected at most 65535 batch entries per launch, got ", B);
  // Enough blocks to fill the GPU across the batch, but no more than the entry's elements need.
  const int64_t want = std::max<int64_t>(1, 1024 / B);
  const int64_t blocks_x = std::min<int64_t>(want, (N + kThreads - 1) / kThreads);
  auto partial = at::empty({B, blocks_x, 2}, M.options().dtype(at::kDouble));
  const dim3 grid(static_cast<unsigned int>(blocks_x), static_cast<unsigned int>(B));
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(M.scalar_type(), "rpca_step_cuda", [&] {
    rpca_step_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
        M.const_data_ptr<scalar_t>(), L.const_data_ptr<scalar_t>(), S.mutable_data_ptr<scalar_t>(),
        Y.mutable_data_ptr<scalar_t>(), A.mutable_data_ptr<scalar_t>(), mu.const_data_ptr<double>(),
        lamb.const_data_ptr<double>(), mu_next.const_data_ptr<double>(), active.const_data_ptr<bool>(),
        alpha.const_data_ptr<double>(), partial.mutable_data_ptr<double>(), N);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return partial.sum(1);
}
