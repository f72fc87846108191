// The fused elementwise passes of rpca_ialm (see rpca_ialm_passes.h).
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "common/scalar_math.h"
#include "rpca_ialm_passes.h"

namespace {
// Fixed chunks (not thread-dependent) so the sums, and hence the stopping iteration, are reproducible.
constexpr int64_t kChunk = 16384;
}  // namespace

void rpca_ialm_sparse_step_cpu(const at::Tensor& M, const at::Tensor& Y, const at::Tensor& L, at::Tensor& S,
                               at::Tensor& X, double inv_mu, double thr) {
  const int64_t N = M.numel();
  const double* m = M.const_data_ptr<double>();
  const double* y = Y.const_data_ptr<double>();
  const double* l = L.const_data_ptr<double>();
  double* s = S.mutable_data_ptr<double>();
  double* x = X.mutable_data_ptr<double>();
  at::parallel_for(0, N, kChunk, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const double t = m[i] + y[i] * inv_mu;
      const double si = lowrankedit::shrink<double>(t - l[i], thr);
      s[i] = si;
      x[i] = t - si;
    }
  });
}

std::pair<double, double> rpca_ialm_dual_step_cpu(const at::Tensor& M, const at::Tensor& S, const at::Tensor& L_new,
                                                  const at::Tensor& L_old, at::Tensor& Y, double mu) {
  const int64_t N = M.numel();
  const int64_t chunks = (N + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks) * 2, 0.0);
  const double* m = M.const_data_ptr<double>();
  const double* s = S.const_data_ptr<double>();
  const double* ln = L_new.const_data_ptr<double>();
  const double* lo = L_old.const_data_ptr<double>();
  double* y = Y.mutable_data_ptr<double>();
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t hi = std::min(N, (c + 1) * kChunk);
      double z2 = 0.0, d2 = 0.0;
      for (int64_t i = c * kChunk; i < hi; ++i) {
        const double z = m[i] - ln[i] - s[i];
        const double d = ln[i] - lo[i];
        y[i] += mu * z;
        z2 += z * z;
        d2 += d * d;
      }
      partial[2 * c] = z2;
      partial[2 * c + 1] = d2;
    }
  });
  double z2 = 0.0, d2 = 0.0;
  for (int64_t c = 0; c < chunks; ++c) {
    z2 += partial[2 * c];
    d2 += partial[2 * c + 1];
  }
  return {z2, d2};
}
