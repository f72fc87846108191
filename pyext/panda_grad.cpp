// Public entry of panda_grad and panda_step (one stem: same contraction, see csrc/panda_grad.h): validate once,
// make contiguous, dispatch by device.
#include <torch/extension.h>

#include "common/checks.h"
#include "panda_grad.h"

namespace {

void check_factors(const char* op, const at::Tensor& Z, const at::Tensor& A, const at::Tensor& P) {
  TORCH_CHECK(Z.scalar_type() == at::kFloat || Z.scalar_type() == at::kDouble, op,
              ": expected Z to have dtype float32 or float64, got ", Z.scalar_type());
  lowrankedit::check_dim(op, "Z", Z, 3, "(N, C, S)");
  lowrankedit::check_dim(op, "A", A, 2, "(C, Rc)");
  lowrankedit::check_dim(op, "P", P, 2, "(S, Rs)");
  lowrankedit::check_same_dtype(op, "Z", Z, "A", A);
  lowrankedit::check_same_dtype(op, "Z", Z, "P", P);
  lowrankedit::check_same_device(op, "Z", Z, "A", A);
  lowrankedit::check_same_device(op, "Z", Z, "P", P);
  lowrankedit::check_backend(op, Z);
  TORCH_CHECK(A.size(0) == Z.size(1), op, ": expected A of shape (C, Rc) with C = ", Z.size(1),
              " (the channels of Z), got A of shape ", A.sizes());
  TORCH_CHECK(P.size(0) == Z.size(2), op, ": expected P of shape (S, Rs) with S = ", Z.size(2),
              " (the spatial size of Z), got P of shape ", P.sizes());
  TORCH_CHECK(Z.numel() > 0 && A.numel() > 0 && P.numel() > 0, op,
              ": expected non-empty Z, A and P, got shapes ", Z.sizes(), ", ", A.sizes(), " and ", P.sizes());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> panda_grad(const at::Tensor& Z, const at::Tensor& A,
                                                          const at::Tensor& P) {
  constexpr const char* op = "panda_grad";
  check_factors(op, Z, A, P);
  const auto Zc = Z.contiguous(), Ac = A.contiguous(), Pc = P.contiguous();
#ifdef WITH_CUDA
  if (Zc.is_cuda()) return panda_grad_cuda(Zc, Ac, Pc);
#endif
  return panda_grad_cpu(Zc, Ac, Pc);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, double, double> panda_step(
    const at::Tensor& Z, const at::Tensor& A, const at::Tensor& P, double lr_parts, double lr_appearances,
    bool line_search, int64_t max_backtracks) {
  constexpr const char* op = "panda_step";
  check_factors(op, Z, A, P);
  lowrankedit::check_finite_scalar(op, "lr_parts", lr_parts);
  lowrankedit::check_finite_scalar(op, "lr_appearances", lr_appearances);
  TORCH_CHECK(lr_parts >= 0 && lr_appearances >= 0, op, ": expected lr_parts >= 0 and lr_appearances >= 0, got ",
              lr_parts, " and ", lr_appearances);
  TORCH_CHECK(max_backtracks >= 0 && max_backtracks <= 1000, op, ": expected 0 <= max_backtracks <= 1000, got ",
              max_backtracks);
  const auto Zc = Z.contiguous(), Ac = A.contiguous(), Pc = P.contiguous();
#ifdef WITH_CUDA
  if (Zc.is_cuda()) return panda_step_cuda(Zc, Ac, Pc, lr_parts, lr_appearances, line_search, max_backtracks);
#endif
  return panda_step_cpu(Zc, Ac, Pc, lr_parts, lr_appearances, line_search, max_backtracks);
}

void bind_panda_grad(pybind11::module_& m) {
  m.def("panda_grad", &panda_grad,
        "Z (N, C, S), A (C, Rc), P (S, Rs) -> (grad_A, grad_P, loss) of sum_i ||Z_i - A A^T Z_i P P^T||_F^2 "
        "(float32/float64, CPU or CUDA)",
        pybind11::arg("Z"), pybind11::arg("A"), pybind11::arg("P"));
  m.def("panda_step", &panda_step,
        "One block-coordinate step of PandA's Algorithm 1 -> (A', P', loss, new_loss, lr_parts, lr_appearances)",
        pybind11::arg("Z"), pybind11::arg("A"), pybind11::arg("P"), pybind11::arg("lr_parts"),
        pybind11::arg("lr_appearances"), pybind11::arg("line_search"), pybind11::arg("max_backtracks"));
}
