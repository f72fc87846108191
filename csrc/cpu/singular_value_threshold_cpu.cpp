#include "singular_value_threshold.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "common/scalar_math.h"

// values: (B, n) contiguous, tau: (B,) float64 -> shrunk: (B, n), survivors: (B,) int64
std::tuple<at::Tensor, at::Tensor> svt_spectrum_cpu(const at::Tensor& values, const at::Tensor& tau) {
  const int64_t B = values.size(0);
  const int64_t n = values.size(1);
  auto shrunk = at::empty_like(values, at::MemoryFormat::Contiguous);
  auto survivors = at::zeros({B}, values.options().dtype(at::kLong));
  if (B == 0 || n == 0) return {shrunk, survivors};
  const double* t = tau.const_data_ptr<double>();
  int64_t* cnt = survivors.mutable_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "svt_spectrum_cpu", [&] {
    const scalar_t* v = values.const_data_ptr<scalar_t>();
    scalar_t* w = shrunk.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const scalar_t tb = static_cast<scalar_t>(t[b]);
        int64_t c = 0;
        for (int64_t i = b * n; i < (b + 1) * n; ++i) {
          const scalar_t s = lowrankedit::shrink<scalar_t>(v[i], tb);
          w[i] = s;
          c += (s != scalar_t(0));
        }
        cnt[b] = c;
      }
    });
  });
  return {shrunk, survivors};
}
