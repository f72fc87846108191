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

double rpca_ialm_merged_step_cpu(const at::Tensor& M, const at::Tensor& L, const at::Tensor& S, at::Tensor& Y,
                                 at::Tensor& S_next, at::Tensor& X, double mu, double inv_mu_next, double thr_next) {
  const int64_t N = M.numel();
  const int64_t chunks = (N + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
  const double* m = M.const_data_ptr<double>();
  const double* l = L.const_data_ptr<double>();
  const double* s = S.const_data_ptr<double>();
  double* y = Y.mutable_data_ptr<double>();
  double* sn = S_next.mutable_data_ptr<double>();
  double* x = X.mutable_data_ptr<double>();
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t hi = std::min(N, (c + 1) * kChunk);
      double z2 = 0.0;
      for (int64_t i = c * kChunk; i < hi; ++i) {
        const double z = m[i] - l[i] - s[i];
        const double yi = y[i] + mu * z;
        const double t = m[i] + yi * inv_mu_next;
        const double si = lowrankedit::shrink<double>(t - l[i], thr_next);
        y[i] = yi;
        sn[i] = si;
        x[i] = t - si;
        z2 += z * z;
      }
      partial[c] = z2;
    }
  });
  double z2 = 0.0;
  for (int64_t c = 0; c < chunks; ++c) z2 += partial[c];
  return z2;
}
