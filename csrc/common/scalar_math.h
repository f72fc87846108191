#pragma once
// Scalar math shared by the CPU and CUDA kernels (C10_HOST_DEVICE so both compile the same code).
#include <c10/macros/Macros.h>

namespace lowrankedit {

// sign(x) * max(|x| - tau, 0); NaN in x stays NaN (the comparison is false, so it falls through).
template <typename acc_t>
C10_HOST_DEVICE inline acc_t shrink(acc_t x, acc_t tau) {
  const acc_t a = x > acc_t(0) ? x : -x;
  if (a <= tau) return acc_t(0);
  return x > acc_t(0) ? x - tau : x + tau;
}

}  // namespace lowrankedit
