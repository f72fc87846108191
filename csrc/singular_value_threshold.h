#pragma once
#include <ATen/ATen.h>
#include <tuple>

// Spectrum step of singular-value thresholding, one pass per batch row:
// values: (B, n) eigenvalues (any order, any sign) or singular values, tau: (B,) float64 >= 0
//   -> shrunk: (B, n) same dtype, sign(v) * max(|v| - tau_b, 0);  survivors: (B,) int64, #{i : |v_i| > tau_b}
// The decomposition itself (eigh / SVD) and the rebuild from the surviving columns are ATen calls in
// pyext/singular_value_threshold.cpp (LAPACK on the CPU, cuSOLVER / cuBLAS on CUDA).
std::tuple<at::Tensor, at::Tensor> svt_spectrum_cpu(const at::Tensor& values, const at::Tensor& tau);
#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> svt_spectrum_cuda(const at::Tensor& values, const at::Tensor& tau);
#endif

// The public entries (pyext/singular_value_threshold.cpp), also called by the robust-PCA driver:
// exact SVT (eigh / SVD) and the warm-started Krylov route for symmetric matrices.
std::tuple<at::Tensor, at::Tensor> singular_value_threshold(const at::Tensor& X, const at::Tensor& tau,
                                                            int64_t symmetric, bool check_finite);
std::tuple<at::Tensor, at::Tensor, at::Tensor> svt_krylov(const at::Tensor& A, const at::Tensor& tau,
                                                          const at::Tensor& W, int64_t steps, at::Generator gen);
