#pragma once
// PandA (Oldfield et al., ICLR 2023): loss and factor gradients of
//   L(A, P) = sum_i || Z_i - A A^T Z_i P P^T ||_F^2,   Z: (N, C, S), A: (C, Rc), P: (S, Rs),
// and the fused block-coordinate step of Algorithm 1 (panda_step shares this stem: it is the same contraction
// plus the fused projected-update kernel, and reuses the products of the gradient for its line search).
//
// Re-association (A is NOT assumed orthonormal). With X_i = Z_i P (C, Rs), Y_i = A^T X_i (Rc, Rs),
// GA = A^T A (Rc, Rc), GP = P^T P (Rs, Rs) and K_i = GA Y_i GP - 2 Y_i (Rc, Rs):
//   grad_P = 2 ( P sum_i Y_i^T GA Y_i  +  sum_i Z_i^T (A K_i) )
//   grad_A = 2 ( A sum_i Y_i GP Y_i^T  +  sum_i X_i K_i^T )
//   L      = sum_i ||Z_i||^2 + <K_i, Y_i>
// (K_i^T = GP Y_i^T GA - 2 Y_i^T is the factor both gradients share.) Only two passes over Z touch O(N C S) data,
// Z P and Z^T B, each with Rs columns; nothing of size S x S or C x C per sample is formed. The official code
// evaluates the chains left to right and builds (N, S, S) and (N, C, C) products.
//
// The contraction is a handful of GEMMs, so it is written once against ATen (BLAS on the CPU, cuBLAS on CUDA:
// the library is best at GEMMs) and instantiated per backend with the two kernels that fuse what ATen would do
// in several passes: the sum of squares of Z with a float64 accumulator (one read, no temporary), and the
// projected step X' = max(0, X - lr G) (or the plain step) that also returns <G, X' - X> for the Armijo test.
#include <ATen/ATen.h>

#include <functional>
#include <tuple>

namespace lowrankedit {
namespace panda {
// How a batch's sums are completed: nullptr for one process (the sums over Z's samples are the batch's); the
// data-parallel step (lowrankedit.distributed.panda_step) passes an all-reduce over the ranks' shares of the batch.
using Reduce = std::function<at::Tensor(const at::Tensor&)>;
}  // namespace panda
}  // namespace lowrankedit

// Z: (n,) contiguous float/double -> 0-dim float64 tensor on Z's device: sum Z^2
at::Tensor panda_sumsq_cpu(const at::Tensor& Z);
// X, G: same shape, contiguous -> (X' = [max(0, .)](X - lr G), 0-dim float64 <G, X' - X>)
std::tuple<at::Tensor, at::Tensor> panda_project_step_cpu(const at::Tensor& X, const at::Tensor& G, double lr,
                                                          bool nonneg);
// Z: (N, C, S), A: (C, Rc), P: (S, Rs) contiguous -> (grad_A (C, Rc), grad_P (S, Rs), loss 0-dim)
std::tuple<at::Tensor, at::Tensor, at::Tensor> panda_grad_cpu(const at::Tensor& Z, const at::Tensor& A,
                                                              const at::Tensor& P);
// -> (A', P', loss at (A, P), loss at (A', P'), lr used for P, lr used for A); reduce: see panda::Reduce
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, double, double> panda_step_cpu(
    const at::Tensor& Z, const at::Tensor& A, const at::Tensor& P, double lr_parts, double lr_appearances,
    bool line_search, int64_t max_backtracks, const lowrankedit::panda::Reduce* reduce);

#ifdef WITH_CUDA
at::Tensor panda_sumsq_cuda(const at::Tensor& Z);
std::tuple<at::Tensor, at::Tensor> panda_project_step_cuda(const at::Tensor& X, const at::Tensor& G, double lr,
                                                           bool nonneg);
std::tuple<at::Tensor, at::Tensor, at::Tensor> panda_grad_cuda(const at::Tensor& Z, const at::Tensor& A,
                                                               const at::Tensor& P);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, double, double> panda_step_cuda(
    const at::Tensor& Z, const at::Tensor& A, const at::Tensor& P, double lr_parts, double lr_appearances,
    bool line_search, int64_t max_backtracks, const lowrankedit::panda::Reduce* reduce);
#endif

namespace lowrankedit {
namespace panda {

// Products at (A, P) that both gradients and the loss share. "j-layout": (Rc, N * Rs) with column (i, r), so that
// sums over samples become single GEMMs with no per-sample loop.
struct Products {
  at::Tensor Xj;  // (C, N*Rs)   X_i = Z_i P, column block i
  at::Tensor Yj;  // (Rc, N*Rs)  Y_i = A^T X_i
  at::Tensor Tj;  // (Rc, N*Rs)  T_i = GA Y_i
  at::Tensor Kj;  // (Rc, N*Rs)  K_i = T_i GP - 2 Y_i
  at::Tensor GA;  // (Rc, Rc)
  at::Tensor GP;  // (Rs, Rs)
  at::Tensor q;   // 0-dim float64: sum_i <K_i, Y_i> = L - ||Z||^2
};

// X in j-layout from Z (N, C, S) and P (S, Rs): one GEMM (N*C, S) x (S, Rs), then a small transpose copy.
inline at::Tensor z_times_p(const at::Tensor& Z, const at::Tensor& P) {
  const int64_t N = Z.size(0), C = Z.size(1), S = Z.size(2), Rs = P.size(1);
  auto X = at::mm(Z.view({N * C, S}), P);                            // (N*C, Rs) = X[i, c, r]
  return X.view({N, C, Rs}).permute({1, 0, 2}).reshape({C, N * Rs});  // (C, N*Rs)
}

// Everything but the passes over Z, given Xj: Y, K, Grams and q.
inline Products products_from_x(const at::Tensor& Xj, const at::Tensor& A, const at::Tensor& P,
                                const at::Tensor* GP_given = nullptr) {
  Products p;
  const int64_t Rc = A.size(1), Rs = P.size(1);
  const int64_t NRs = Xj.size(1);
  p.Xj = Xj;
  p.GA = at::mm(A.t(), A);
  p.GP = GP_given ? *GP_given : at::mm(P.t(), P);
  p.Yj = at::mm(A.t(), Xj);                                 // (Rc, N*Rs)
  p.Tj = at::mm(p.GA, p.Yj);                                // (Rc, N*Rs)   GA Y_i
  auto Yv = p.Yj.view({Rc * (NRs / Rs), Rs});               // rows (k, i), columns r
  p.Kj = at::addmm(Yv, p.Tj.view({-1, Rs}), p.GP, /*beta=*/-2, /*alpha=*/1).view({Rc, NRs});  // T GP - 2 Y
  p.q = at::sum(p.Kj.to(at::kDouble) * p.Yj.to(at::kDouble));
  return p;
}

inline Products products(const at::Tensor& Z, const at::Tensor& A, const at::Tensor& P) {
  return products_from_x(z_times_p(Z, P), A, P);
}

// grad_P = 2 (P sum_i Y_i^T GA Y_i + sum_i Z_i^T A K_i): the second pass over Z.
inline at::Tensor grad_parts(const at::Tensor& Z, const at::Tensor& A, const at::Tensor& P, const Products& p) {
  const int64_t N = Z.size(0), C = Z.size(1), S = Z.size(2), Rc = A.size(1), Rs = P.size(1);
  auto U = at::mm(p.Yj.view({Rc * N, Rs}).t(), p.Tj.view({Rc * N, Rs}));  // (Rs, Rs) sum_i Y_i^T GA Y_i
  auto Bj = at::mm(A, p.Kj);                                             // (C, N*Rs) A K_i
  auto Bn = Bj.view({C, N, Rs}).permute({1, 0, 2}).reshape({N * C, Rs});  // (N*C, Rs)
  auto g = at::mm(P, U);
  return at::addmm(g, Z.view({N * C, S}).t(), Bn, /*beta=*/2, /*alpha=*/2);  // (S, Rs)
}

// grad_A = 2 (A sum_i Y_i GP Y_i^T + sum_i X_i K_i^T): no pass over Z (X is known).
inline at::Tensor grad_appearances(const at::Tensor& A, const Products& p) {
  const int64_t Rs = p.GP.size(0);
  auto YG = at::mm(p.Yj.view({-1, Rs}), p.GP).view(p.Yj.sizes());  // (Rc, N*Rs) Y_i GP
  auto V = at::mm(YG, p.Yj.t());                                   // (Rc, Rc)
  auto g = at::mm(p.Xj, p.Kj.t());                                 // (C, Rc) sum_i X_i K_i^T
  return at::addmm(g, A, V, /*beta=*/2, /*alpha=*/2);
}

template <typename Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor> grad(const at::Tensor& Z, const at::Tensor& A, const at::Tensor& P) {
  const auto p = products(Z, A, P);
  auto gP = grad_parts(Z, A, P, p);
  auto gA = grad_appearances(A, p);
  auto loss = (Backend::sumsq(Z) + p.q).to(Z.scalar_type());
  return {gA, gP, loss};
}

// The batch's total of a sum over Z's samples: the sum itself in one process, the all-reduce of the ranks' partial
// sums in the data-parallel step.
inline at::Tensor total(const Reduce* reduce, const at::Tensor& t) { return reduce ? (*reduce)(t) : t; }

// The one acceptance rule of the line search (both blocks; the op and the data-parallel step both run it):
// trial(lr) forms a candidate and returns (q at it, <grad, candidate - current>); the first lr = lr0, lr0 / 2, ...
// (at most max_backtracks halvings) that passes the Armijo test q <= q0 + 1e-4 <grad, candidate - current> is
// accepted (without line_search: the first). Returns whether one was, and its lr in *lr_used (0.0 if none).
template <typename Trial>
bool backtrack(double lr0, bool line_search, int64_t max_backtracks, double q0, Trial&& trial, double* lr_used) {
  constexpr double armijo = 1e-4;
  double lr = lr0;
  for (int64_t t = 0; t <= max_backtracks; ++t, lr *= 0.5) {
    const auto qd = trial(lr);
    if (!line_search || qd.first <= q0 + armijo * qd.second) {
      *lr_used = lr;
      return true;
    }
  }
  *lr_used = 0.0;
  return false;
}

// Algorithm 1, one iteration: P <- max(0, P - lr_P grad_P(A, P)), then A <- A - lr_A grad_A(A, P_new).
// With line_search, each step is backtracked (lr halved) from the given lr until the Armijo condition
//   L(new) <= L(old) + 1e-4 <grad, new - old>
// holds (backtrack above); the trial losses come from the products the next gradient needs anyway (Z P_new for the A
// step), and the A step's trials need no pass over Z at all. If no trial of a block decreases the loss within
// max_backtracks, that block is left unchanged and its lr is reported as 0. Every sum over samples (the gradients,
// the losses) goes through total(reduce, .), so ranks holding shares of a batch take the step of the whole batch.
template <typename Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, double, double> step(
    const at::Tensor& Z, const at::Tensor& A, const at::Tensor& P, double lr_P, double lr_A, bool line_search,
    int64_t max_backtracks, const Reduce* reduce = nullptr) {
  const auto zsq = total(reduce, Backend::sumsq(Z));
  auto p0 = products(Z, A, P);
  p0.q = total(reduce, p0.q);
  const auto gP = total(reduce, grad_parts(Z, A, P, p0));

  // --- parts block ---
  at::Tensor P1 = P, Pt;
  Products p1 = p0, pt;
  double lr_P_used = 0.0;
  const auto parts_trial = [&](double lr) {
    at::Tensor dir;
    std::tie(Pt, dir) = Backend::project_step(P, gP, lr, /*nonneg=*/true);
    pt = products(Z, A, Pt);
    pt.q = total(reduce, pt.q);
    return std::make_pair(pt.q.item<double>(), dir.item<double>());
  };
  if (backtrack(lr_P, line_search, max_backtracks, p0.q.item<double>(), parts_trial, &lr_P_used)) {
    P1 = Pt;
    p1 = pt;
  }

  // --- appearances block, at the new parts ---
  const auto gA = total(reduce, grad_appearances(A, p1));
  at::Tensor A1 = A, At;
  Products p2 = p1, pa;
  double lr_A_used = 0.0;
  const auto appearances_trial = [&](double lr) {
    at::Tensor dir;
    std::tie(At, dir) = Backend::project_step(A, gA, lr, /*nonneg=*/false);
    pa = products_from_x(p1.Xj, At, P1, &p1.GP);
    pa.q = total(reduce, pa.q);
    return std::make_pair(pa.q.item<double>(), dir.item<double>());
  };
  if (backtrack(lr_A, line_search, max_backtracks, p1.q.item<double>(), appearances_trial, &lr_A_used)) {
    A1 = At;
    p2 = pa;
  }
  auto loss = (zsq + p0.q).to(Z.scalar_type());
  auto new_loss = (zsq + p2.q).to(Z.scalar_type());
  return {A1, P1, loss, new_loss, lr_P_used, lr_A_used};
}

}  // namespace panda
}  // namespace lowrankedit
