#pragma once
// The two elementwise passes of one rpca_ialm iteration (csrc/rpca_ialm.cpp), each one read of its inputs and one
// write of its outputs into buffers allocated once: at n = 9216 an (n, n) float64 matrix is 680 MB, and the
// composed form (about 26 matrix reads and writes per iteration, and a fresh allocation, hence page faults, for
// every temporary) made the iteration memory-bound and growing faster than n^2.
// All tensors (n, n) float64 contiguous on one device.
#include <ATen/ATen.h>

#include <utility>

// Sparse step: T = M + Y inv_mu;  S = shrink(T - L, thr);  X = T - S (the SVT argument).  M, Y, L read; S, X written.
void rpca_ialm_sparse_step_cpu(const at::Tensor& M, const at::Tensor& Y, const at::Tensor& L, at::Tensor& S,
                               at::Tensor& X, double inv_mu, double thr);
// Dual step: Z = M - L_new - S;  Y += mu Z  ->  (sum Z^2, sum (L_new - L_old)^2).  Y written in place.
std::pair<double, double> rpca_ialm_dual_step_cpu(const at::Tensor& M, const at::Tensor& S, const at::Tensor& L_new,
                                                  const at::Tensor& L_old, at::Tensor& Y, double mu);
