// Entries of panda_grad and panda_step (one stem: same contraction, see csrc/panda_grad.h): validate once (shapes,
// dtypes, devices, finite factors and step sizes; Z through the loss), make contiguous, call the kernels of the device.
// The pybind entry panda_step_reduced (a callback, which a dispatcher schema cannot express) is the same step with
// every sum over the batch completed by a Python all-reduce: the data-parallel step runs the op's own rule, not a
// copy of it.
#include <torch/extension.h>
#include <pybind11/functional.h>

#include <cmath>

#include "common/checks.h"
#include "panda_grad.h"
#include "registration.h"

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
  // Z's values are checked through the loss (see checked_loss): a scan of Z would be one more pass over the largest
  // input, and the loss, sum ||Z_i||^2 + <K_i, Y_i>, is NaN or Inf whenever Z holds a NaN or an Inf.
  lowrankedit::check_finite(op, "A", A);
  lowrankedit::check_finite(op, "P", P);
}

void check_steps(const char* op, double lr_parts, double lr_appearances, int64_t max_backtracks) {
  TORCH_CHECK_VALUE(std::isfinite(lr_parts) && lr_parts >= 0, op, ": expected lr_parts to be finite and >= 0, got ",
                    lr_parts);
  TORCH_CHECK_VALUE(std::isfinite(lr_appearances) && lr_appearances >= 0, op,
                    ": expected lr_appearances to be finite and >= 0, got ", lr_appearances);
  TORCH_CHECK_VALUE(max_backtracks >= 0 && max_backtracks <= 1000, op,
                    ": expected 0 <= max_backtracks <= 1000, got ", max_backtracks);
}

// A loss that is not finite, with A and P finite, means Z holds a NaN or Inf (worded by scanning Z, only then) or the
// loss overflowed Z's dtype.
void checked_loss(const char* op, const at::Tensor& Z, const at::Tensor& loss) {
  const double v = loss.item<double>();
  if (std::isfinite(v)) return;
  lowrankedit::refuse_nonfinite_result(op, "Z", Z, "the loss overflows", Z.scalar_type());
}

using Step = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// The step sizes used as 0-dim float64 CPU tensors (a schema returns tensors; they are host numbers already). A
// block left unchanged comes back as its input tensor: copied, since an operator's outputs never alias its inputs.
Step as_step(const std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, double, double>& r, const at::Tensor& A,
             const at::Tensor& P) {
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  const auto fresh = [](const at::Tensor& out, const at::Tensor& in) { return out.is_same(in) ? out.clone() : out; };
  return {fresh(std::get<0>(r), A), fresh(std::get<1>(r), P), std::get<2>(r), std::get<3>(r),
          at::scalar_tensor(std::get<4>(r), opts), at::scalar_tensor(std::get<5>(r), opts)};
}

// One entry per op, instantiated for each backend's kernel: validate once, make contiguous, call the kernel.
template <auto kernel>
std::tuple<at::Tensor, at::Tensor, at::Tensor> panda_grad_entry(const at::Tensor& Z, const at::Tensor& A,
                                                                const at::Tensor& P) {
  check_factors("panda_grad", Z, A, P);
  const auto Zc = Z.contiguous();
  auto out = kernel(Zc, A.contiguous(), P.contiguous());
  checked_loss("panda_grad", Zc, std::get<2>(out));
  return out;
}

template <auto kernel>
Step panda_step_entry(const at::Tensor& Z, const at::Tensor& A, const at::Tensor& P, double lr_parts,
                      double lr_appearances, bool line_search, int64_t max_backtracks,
                      const lowrankedit::panda::Reduce* reduce = nullptr) {
  check_factors("panda_step", Z, A, P);
  check_steps("panda_step", lr_parts, lr_appearances, max_backtracks);
  // Reduced, the loss is the sum over every rank's shard: a rank checks its own Z up front, since a loss that is not
  // finite would not say whose Z it came from.
  if (reduce) lowrankedit::check_finite("panda_step", "Z", Z);
  const auto Zc = Z.contiguous(), Ac = A.contiguous(), Pc = P.contiguous();
  auto out = kernel(Zc, Ac, Pc, lr_parts, lr_appearances, line_search, max_backtracks, reduce);
  if (!reduce) checked_loss("panda_step", Zc, std::get<2>(out));
  return as_step(out, Ac, Pc);
}

// The registered op: the batch is all in Z (no reduction).
template <auto kernel>
Step panda_step_op(const at::Tensor& Z, const at::Tensor& A, const at::Tensor& P, double lr_parts,
                   double lr_appearances, bool line_search, int64_t max_backtracks) {
  return panda_step_entry<kernel>(Z, A, P, lr_parts, lr_appearances, line_search, max_backtracks);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(lowrankedit, m) {
  m.def("panda_grad(Tensor Z, Tensor A, Tensor P) -> (Tensor grad_A, Tensor grad_P, Tensor loss)");
  m.def("panda_step(Tensor Z, Tensor A, Tensor P, float lr_parts, float lr_appearances, bool line_search=False, "
        "int max_backtracks=40) -> (Tensor appearances, Tensor parts, Tensor loss, Tensor new_loss, "
        "Tensor lr_parts, Tensor lr_appearances)");
}
LOWRANKEDIT_IMPL(panda_grad, &panda_grad_entry<panda_grad_cpu>, &panda_grad_entry<panda_grad_cuda>)
LOWRANKEDIT_IMPL(panda_step, &panda_step_op<panda_step_cpu>, &panda_step_op<panda_step_cuda>)

// panda_step(Z, A, P, ...) whose sums over the batch are reduce(local sum) (lowrankedit.distributed.panda_step).
void bind_panda_step_reduced(pybind11::module_& m) {
  m.def(
      "panda_step_reduced",
      [](const at::Tensor& Z, const at::Tensor& A, const at::Tensor& P, double lr_parts, double lr_appearances,
         bool line_search, int64_t max_backtracks, const lowrankedit::panda::Reduce& reduce) {
        if (Z.is_cuda()) {
#ifdef WITH_CUDA
          return panda_step_entry<panda_step_cuda>(Z, A, P, lr_parts, lr_appearances, line_search, max_backtracks,
                                                   &reduce);
#else
          TORCH_CHECK(false, "panda_step_reduced: got a CUDA tensor, but lowrankedit was built without CUDA kernels");
#endif
        }
        return panda_step_entry<panda_step_cpu>(Z, A, P, lr_parts, lr_appearances, line_search, max_backtracks,
                                                &reduce);
      },
      "torch.ops.lowrankedit.panda_step with every sum over the batch passed through reduce(tensor) -> tensor",
      pybind11::arg("Z"), pybind11::arg("A"), pybind11::arg("P"), pybind11::arg("lr_parts"),
      pybind11::arg("lr_appearances"), pybind11::arg("line_search"), pybind11::arg("max_backtracks"),
      pybind11::arg("reduce"));
}
