#include "panda_grad.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace {

// Per-thread partial sums in float64, combined in a fixed order (deterministic for a given thread count).
template <typename F>
double parallel_sum(int64_t n, F&& body) {
  const int64_t grain = 1 << 14;
  const int64_t chunks = std::max<int64_t>(1, (n + grain - 1) / grain);
  std::vector<double> partial(chunks, 0.0);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t begin = c * grain, end = std::min(n, begin + grain);
      partial[c] = body(begin, end);
    }
  });
  double total = 0.0;
  for (double v : partial) total += v;
  return total;
}

struct CpuBackend {
  static at::Tensor sumsq(const at::Tensor& Z) { return panda_sumsq_cpu(Z); }
  static std::tuple<at::Tensor, at::Tensor> project_step(const at::Tensor& X, const at::Tensor& G, double lr,
                                                         bool nonneg) {
    return panda_project_step_cpu(X, G, lr, nonneg);
  }
};

}  // namespace

// Z: (n,) -> sum Z^2 as a 0-dim float64 tensor (one read, float64 accumulator, no temporary)
at::Tensor panda_sumsq_cpu(const at::Tensor& Z) {
  double total = 0.0;
  const int64_t n = Z.numel();
  AT_DISPATCH_FLOATING_TYPES(Z.scalar_type(), "panda_sumsq_cpu", [&] {
    const scalar_t* z = Z.const_data_ptr<scalar_t>();
    total = parallel_sum(n, [&](int64_t begin, int64_t end) {
      double s = 0.0;
      for (int64_t i = begin; i < end; ++i) {
        const double v = static_cast<double>(z[i]);
        s += v * v;
      }
      return s;
    });
  });
  return at::scalar_tensor(total, Z.options().dtype(at::kDouble));
}

// X, G: (n,) -> X' = [max(0, .)](X - lr G) and <G, X' - X> (float64), in one pass
std::tuple<at::Tensor, at::Tensor> panda_project_step_cpu(const at::Tensor& X, const at::Tensor& G, double lr,
                                                          bool nonneg) {
  auto Xn = at::empty_like(X, at::MemoryFormat::Contiguous);
  double dir = 0.0;
  const int64_t n = X.numel();
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "panda_project_step_cpu", [&] {
    const scalar_t* x = X.const_data_ptr<scalar_t>();
    const scalar_t* g = G.const_data_ptr<scalar_t>();
    scalar_t* y = Xn.mutable_data_ptr<scalar_t>();
    const scalar_t step = static_cast<scalar_t>(lr);
    dir = parallel_sum(n, [&](int64_t begin, int64_t end) {
      double s = 0.0;
      for (int64_t i = begin; i < end; ++i) {
        scalar_t v = x[i] - step * g[i];
        if (nonneg && v < scalar_t(0)) v = scalar_t(0);  // projection onto >= 0; NaN stays NaN
        y[i] = v;
        s += static_cast<double>(g[i]) * (static_cast<double>(v) - static_cast<double>(x[i]));
      }
      return s;
    });
  });
  return {Xn, at::scalar_tensor(dir, X.options().dtype(at::kDouble))};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> panda_grad_cpu(const at::Tensor& Z, const at::Tensor& A,
                                                              const at::Tensor& P) {
  return lowrankedit::panda::grad<CpuBackend>(Z, A, P);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, double, double> panda_step_cpu(
    const at::Tensor& Z, const at::Tensor& A, const at::Tensor& P, double lr_parts, double lr_appearances,
    bool line_search, int64_t max_backtracks, const lowrankedit::panda::Reduce* reduce) {
  return lowrankedit::panda::step<CpuBackend>(Z, A, P, lr_parts, lr_appearances, line_search, max_backtracks,
                                              reduce);
}
