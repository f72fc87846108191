#include "soft_threshold.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include "common/scalar_math.h"

// X: (...) contiguous -> Y: (...)
at::Tensor soft_threshold_cpu(const at::Tensor& X, double tau) {
  auto Y = at::empty_like(X, at::MemoryFormat::Contiguous);
  const int64_t n = X.numel();
  if (n == 0) return Y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "soft_threshold_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* x = X.const_data_ptr<scalar_t>();
    scalar_t* y = Y.mutable_data_ptr<scalar_t>();
    const acc_t t = static_cast<acc_t>(tau);
    at::parallel_for(0, n, at::internal::GRAIN_SIZE, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        y[i] = static_cast<scalar_t>(lowrankedit::shrink<acc_t>(static_cast<acc_t>(x[i]), t));
      }
    });
  });
  return Y;
}
