#pragma once
#include <ATen/ATen.h>

#include <tuple>
#include <utility>

// Spectrum step of singular-value thresholding, one pass per batch row:
// values: (B, n) eigenvalues (any order, any sign) or singular values, tau: (B,) float64 >= 0
//   -> shrunk: (B, n) same dtype, sign(v) * max(|v| - tau_b, 0);  survivors: (B,) int64, #{i : |v_i| > tau_b}
std::tuple<at::Tensor, at::Tensor> svt_spectrum_cpu(const at::Tensor& values, const at::Tensor& tau);
#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> svt_spectrum_cuda(const at::Tensor& values, const at::Tensor& tau);
#endif

namespace lowrankedit {
namespace svt {

// max |X - X^T| <= kSymmetryTol * eps * max |X| counts as symmetric (GEMM-made Grams are rarely bitwise symmetric).
constexpr double kSymmetryTol = 1e3;

// The composed routes (csrc/singular_value_threshold.cpp: ATen's eigh / SVD / QR, LAPACK on the CPU, cuSOLVER and
// cuBLAS on CUDA, around the spectrum kernel). Inputs are trusted: the op's entry (pyext/) validated them once, and
// the robust-PCA driver calls these every iteration without re-checking.

// The spectrum kernel of X's device.
std::tuple<at::Tensor, at::Tensor> spectrum(const at::Tensor& values, const at::Tensor& tau);

// Xb: (B, n, n). (X_sym, true) when every matrix is symmetric to rounding (then X_sym = (X + X^T) / 2, or Xb itself
// when bitwise symmetric); (Xb, false) otherwise. One reduction and one host sync.
std::pair<at::Tensor, bool> symmetric_to_rounding(const at::Tensor& Xb);

// Exact SVT. Xb: (B, m, n) contiguous float/double, tau: (B,) f64 on Xb's device; use_eigh: eigendecomposition
// of the lower triangle (square, symmetric X) instead of an SVD -> (Y (B, m, n), rank (B,) int64).
std::tuple<at::Tensor, at::Tensor> exact(const at::Tensor& Xb, const at::Tensor& tau, bool use_eigh);

// Partial SVT of symmetric matrices by Rayleigh-Ritz on a warm-started block Krylov space.
// A: (B, n, n) symmetric contiguous, tau: (B,) f64, W: (B, n, p) or undefined
//   -> (L (B, n, n), rank (B,) int64, W_next (B, n, max(rank) + 2))
std::tuple<at::Tensor, at::Tensor, at::Tensor> krylov(const at::Tensor& A, const at::Tensor& tau, const at::Tensor& W,
                                                      int64_t steps, at::Generator gen);

}  // namespace svt
}  // namespace lowrankedit
