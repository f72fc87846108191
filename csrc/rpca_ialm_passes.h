#pragma once
// The (n, n) work of one rpca_ialm iteration on the CPU (csrc/rpca_ialm.cpp), on the upper triangle of tiles only:
// every matrix of the iteration (M, Y, L, S, the SVT argument X) is symmetric, so each pass reads and writes only
// the tiles (I, J), I <= J, of kTile x kTile entries, and the Krylov products X V use each stored tile twice
// (X_IJ V_J and X_IJ^T V_I). At n = 9216 an (n, n) float64 matrix is 680 MB and the iteration is bound by memory
// traffic and by the skinny products (n x n times n x ~15, where a general GEMM packs the big operand and runs far
// below the machine's peak), so halving the matrices read and using an in-cache kernel is what pays.
// L = A Bt is never stored: each pass forms its tile from the factors (A = U diag(w) (n, r), Bt = U^T (r, n)); A
// empty (r = 0) means L = 0.
// All (n, n) tensors float64 contiguous CPU; only their upper tiles are read or written (M, Y may be full).
// scratch: a float64 CPU tensor the caller keeps across calls (grown when needed; its contents are not kept).
// Sums and products run over a fixed partition of the tiles (not the thread count), so results are reproducible.
#include <ATen/ATen.h>

namespace lowrankedit {

// Sparse step with L = 0: T = M + Y inv_mu;  S = shrink(T, thr);  X = T - alpha S - (1 - alpha) M.
void rpca_ialm_sparse_step_cpu(const at::Tensor& M, const at::Tensor& Y, at::Tensor& S, at::Tensor& X,
                               double inv_mu, double thr, double alpha);
// Merged step (this iteration's dual update and the next one's sparse step, one pass), L = A Bt, X this iteration's
// SVT argument on entry:
//   Z = M - L - S;  Y = mu (X - L);  T = M + Y inv_mu_next;  S_next = shrink(T - L, thr_next);
//   X = T - alpha S_next - (1 - alpha) (M - L)   -> ||Z||_F^2 (over the whole symmetric matrix).
double rpca_ialm_merged_step_cpu(const at::Tensor& M, const at::Tensor& S, at::Tensor& Y, at::Tensor& S_next,
                                 at::Tensor& X, const at::Tensor& A, const at::Tensor& Bt, double mu,
                                 double inv_mu_next, double thr_next, double alpha, at::Tensor& scratch);
// X = A Bt + Y inv_mu (the SVT argument of the last iteration, for the certificate).
void rpca_ialm_last_argument_cpu(const at::Tensor& Y, at::Tensor& X, const at::Tensor& A, const at::Tensor& Bt,
                                 double inv_mu, at::Tensor& scratch);
// X V for the symmetric X stored in its upper tiles; V (n, p) float64, any layout -> (n, p) contiguous.
at::Tensor rpca_ialm_symmetric_apply_cpu(const at::Tensor& X, const at::Tensor& V, at::Tensor& scratch);
// T's strict lower triangle overwritten by its upper one (in place): the full symmetric matrix.
void rpca_ialm_mirror_upper_cpu(at::Tensor& T);

}  // namespace lowrankedit
