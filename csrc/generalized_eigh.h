#pragma once
#include <ATen/ATen.h>

#include <tuple>

// The two fused elementwise pieces of generalized_eigh; the linear algebra between them (Cholesky, triangular
// solves, symmetric eigensolver) is ATen's LAPACK / cuSOLVER, called from the driver below
// (csrc/generalized_eigh.cpp).
//
// prepare:  A: (N, D, D), B: (N, D, D) contiguous, tau >= 0
//        -> As: (N, D, D) = (A + A^T) / 2,   Bs: (N, D, D) = (B + B^T) / 2 + tau * tr(B) * I
// One pass over both matrices (the trace is one extra pass over N * D diagonal entries).
std::tuple<at::Tensor, at::Tensor> generalized_eigh_prepare_cpu(const at::Tensor& A, const at::Tensor& B,
                                                                double tau);

// finalize: w: (N, D) ascending, X: (N, D, D) eigenvectors in columns (ascending order)
//        -> wd: (N, D) descending, Xd: (N, D, D) with Xd[:, :, j] = s_j * X[:, :, D-1-j], where s_j makes the
//           column's largest-magnitude entry positive and, if unit_norm, its Euclidean norm 1.
std::tuple<at::Tensor, at::Tensor> generalized_eigh_finalize_cpu(const at::Tensor& w, const at::Tensor& X,
                                                                 bool unit_norm);

#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> generalized_eigh_prepare_cuda(const at::Tensor& A, const at::Tensor& B,
                                                                 double tau);
std::tuple<at::Tensor, at::Tensor> generalized_eigh_finalize_cuda(const at::Tensor& w, const at::Tensor& X,
                                                                  bool unit_norm);
#endif

namespace lowrankedit {
namespace geigh {

// The driver (device-agnostic). A3, B3: (N, D, D) contiguous, finite, one dtype (float/double) and device, tau >= 0
// (checked by the entry) -> (eigenvalues (N, D) descending, eigenvectors (N, D, D) in columns). Raises, naming the
// cause, when B + tau tr(B) I is not positive definite (op names the caller in the message).
std::tuple<at::Tensor, at::Tensor> solve(const char* op, const at::Tensor& A3, const at::Tensor& B3, double tau,
                                         bool unit_norm);

}  // namespace geigh
}  // namespace lowrankedit
