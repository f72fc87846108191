#include "soft_threshold.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <cmath>

#include "common/scalar_math.h"

// X: (...) contiguous -> (Y: (...), X has a NaN or Inf)
std::pair<at::Tensor, bool> soft_threshold_cpu(const at::Tensor& X, double tau) {
  auto Y = at::empty_like(X, at::MemoryFormat::Contiguous);
  const int64_t n = X.numel();
  std::atomic<bool> nonfinite{false};
  if (n == 0) return {Y, false};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "soft_threshold_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* x = X.const_data_ptr<scalar_t>();
    scalar_t* y = Y.mutable_data_ptr<scalar_t>();
    const acc_t t = static_cast<acc_t>(tau);
    at::parallel_for(0, n, at::internal::GRAIN_SIZE, [&](int64_t begin, int64_t end) {
      bool bad = false;
      for (int64_t i = begin; i < end; ++i) {
        const acc_t v = static_cast<acc_t>(x[i]);
        bad |= !std::isfinite(v);
        y[i] = static_cast<scalar_t>(lowrankedit::shrink<acc_t>(v, t));
      }
      if (bad) nonfinite.store(true, std::memory_order_relaxed);
    });
  });
  return {Y, nonfinite.load()};
}
