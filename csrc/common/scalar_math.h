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

// One entry of the fused robust-PCA step (shared by the CPU and CUDA rpca_step kernels), with over-relaxation
// alpha (1 = plain ADMM, the official iteration, bit for bit):
//   lh = alpha l + (1 - alpha)(m - s);  s_new = shrink(m - lh - y/mu, lamb/mu);  y_new = y + mu (lh + s_new - m)
//   a = m - s_new - y_new/mu_next;  returns r = l + s_new - m (primal residual entry) and writes
//   d = (alpha - 1)(l + s - m) + s_new - s, the entry of the dual residual / mu: the L-step's optimality gap.
template <typename acc_t>
C10_HOST_DEVICE inline acc_t rpca_entry(acc_t m, acc_t l, acc_t y, acc_t s, acc_t mu, acc_t inv_mu, acc_t thr,
                                        acc_t inv_mu_next, acc_t alpha, acc_t& s_new, acc_t& y_new, acc_t& a_new,
                                        acc_t& d) {
  const acc_t lh = alpha == acc_t(1) ? l : alpha * l + (acc_t(1) - alpha) * (m - s);
  s_new = shrink<acc_t>(m - lh - y * inv_mu, thr);
  const acc_t r = l + s_new - m;
  y_new = y + mu * (lh + s_new - m);
  a_new = m - s_new - y_new * inv_mu_next;
  d = (alpha - acc_t(1)) * (l + s - m) + (s_new - s);
  return r;
}

}  // namespace lowrankedit
