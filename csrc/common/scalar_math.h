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

namespace lowrankedit {

// One entry of the fused robust-PCA step (shared by the CPU and CUDA rpca_step kernels):
//   s_new = shrink(m - l - y/mu, lamb/mu);  r = l + s_new - m;  y_new = y + mu r;  a = m - s_new - y_new/mu_next
// Returns r (the primal residual entry) and writes s_new, y_new, a; the caller accumulates r^2 and (s_new - s)^2.
template <typename acc_t>
C10_HOST_DEVICE inline acc_t rpca_entry(acc_t m, acc_t l, acc_t y, acc_t mu, acc_t inv_mu, acc_t thr, acc_t inv_mu_next,
                                        acc_t& s_new, acc_t& y_new, acc_t& a_new) {
  s_new = shrink<acc_t>(m - l - y * inv_mu, thr);
  const acc_t r = l + s_new - m;
  y_new = y + mu * r;
  a_new = m - s_new - y_new * inv_mu_next;
  return r;
}

}  // namespace lowrankedit
