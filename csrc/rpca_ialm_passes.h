#pragma once
// The two elementwise passes of one rpca_ialm iteration (csrc/rpca_ialm.cpp), each one read of its inputs and one
// write of its outputs into buffers allocated once: at n = 9216 an (n, n) float64 matrix is 680 MB, and the
// composed form (about 26 matrix reads and writes per iteration, and a fresh allocation, hence page faults, for
// every temporary) made the iteration memory-bound and growing faster than n^2.
// All tensors (n, n) float64 contiguous on one device.
#include <ATen/ATen.h>


// Sparse step: T = M + Y inv_mu;  S = shrink(T - L, thr);  X = T - S (the SVT argument).  M, Y, L read; S, X written.
void rpca_ialm_sparse_step_cpu(const at::Tensor& M, const at::Tensor& Y, const at::Tensor& L, at::Tensor& S,
                               at::Tensor& X, double inv_mu, double thr);
// Merged step (this iteration's dual update and the next one's sparse step, one pass):
//   Z = M - L - S;  Y += mu Z;  T = M + Y inv_mu_next;  S_next = shrink(T - L, thr_next);  X = T - S_next
//   -> sum Z^2.  M, L, S read; Y, S_next, X written.
double rpca_ialm_merged_step_cpu(const at::Tensor& M, const at::Tensor& L, const at::Tensor& S, at::Tensor& Y,
                                 at::Tensor& S_next, at::Tensor& X, double mu, double inv_mu_next, double thr_next);
