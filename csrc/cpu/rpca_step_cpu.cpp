#include "rpca_step.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "common/scalar_math.h"

namespace {
// Fixed chunks (not thread-dependent) so the sums, and hence the stopping iteration, are reproducible.
constexpr int64_t kChunk = 16384;
}  // namespace

// M, L: (B, N); S, Y, A: (B, N) in place; mu, lamb, mu_next, alpha: (B,) f64; active: (B,) bool -> norms (B, 2)
at::Tensor rpca_step_cpu(const at::Tensor& M, const at::Tensor& L, at::Tensor& S, at::Tensor& Y, at::Tensor& A,
                         const at::Tensor& mu, const at::Tensor& lamb, const at::Tensor& mu_next,
                         const at::Tensor& active, const at::Tensor& alpha) {
  const int64_t B = M.size(0);
  const int64_t N = M.size(1);
  auto norms = at::zeros({B, 2}, M.options().dtype(at::kDouble));
  if (B == 0 || N == 0) return norms;
  const int64_t chunks_per = (N + kChunk - 1) / kChunk;
  const int64_t total = B * chunks_per;
  std::vector<double> partial(static_cast<size_t>(total) * 2, 0.0);
  const double* mu_p = mu.const_data_ptr<double>();
  const double* lamb_p = lamb.const_data_ptr<double>();
  const double* mun_p = mu_next.const_data_ptr<double>();
  const bool* act = active.const_data_ptr<bool>();
  const double* al_p = alpha.const_data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(M.scalar_type(), "rpca_step_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* m = M.const_data_ptr<scalar_t>();
    const scalar_t* l = L.const_data_ptr<scalar_t>();
    scalar_t* s = S.mutable_data_ptr<scalar_t>();
    scalar_t* y = Y.mutable_data_ptr<scalar_t>();
    scalar_t* a = A.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, total, 1, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        const int64_t b = c / chunks_per;
        if (!act[b]) continue;
        const acc_t mub = static_cast<acc_t>(mu_p[b]);
        const acc_t inv_mu = acc_t(1) / mub;
        const acc_t thr = static_cast<acc_t>(lamb_p[b]) * inv_mu;
        const acc_t inv_mun = acc_t(1) / static_cast<acc_t>(mun_p[b]);
        const acc_t alb = static_cast<acc_t>(al_p[b]);
        const int64_t lo = b * N + (c % chunks_per) * kChunk;
        const int64_t hi = std::min(lo + kChunk, (b + 1) * N);
        double r2 = 0.0, ds2 = 0.0;
        for (int64_t i = lo; i < hi; ++i) {
          const acc_t mi = static_cast<acc_t>(m[i]);
          const acc_t li = static_cast<acc_t>(l[i]);
          const acc_t yi = static_cast<acc_t>(y[i]);
          const acc_t s_old = static_cast<acc_t>(s[i]);
          acc_t s_new, y_new, a_new, d;
          const acc_t r = lowrankedit::rpca_entry<acc_t>(mi, li, yi, s_old, mub, inv_mu, thr, inv_mun, alb, s_new,
                                                         y_new, a_new, d);
          s[i] = static_cast<scalar_t>(s_new);
          y[i] = static_cast<scalar_t>(y_new);
          a[i] = static_cast<scalar_t>(a_new);
          const double dr = static_cast<double>(r), dd = static_cast<double>(d);
          r2 += dr * dr;
          ds2 += dd * dd;
        }
        partial[2 * c] = r2;
        partial[2 * c + 1] = ds2;
      }
    });
  });
  double* out = norms.mutable_data_ptr<double>();
  for (int64_t c = 0; c < total; ++c) {
    const int64_t b = c / chunks_per;
    out[2 * b] += partial[2 * c];
    out[2 * b + 1] += partial[2 * c + 1];
  }
  return norms;
}
