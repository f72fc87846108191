#pragma once
// How every op is registered with the PyTorch dispatcher (namespace `lowrankedit`, so each op is
// torch.ops.lowrankedit.<op>). Each pyext/<op>.cpp holds, for its ops:
//
//   TORCH_LIBRARY_FRAGMENT(lowrankedit, m) { m.def("<op>(Tensor X, float tau) -> Tensor"); }   // the schema
//   LOWRANKEDIT_IMPL(<op>, <cpu entry>, <cuda entry>)                                         // the kernels
//
// Fragments (not one central TORCH_LIBRARY) so that adding an op touches no shared list: the registrations are the
// only list of ops (lowrankedit.info()["ops"], the Python wrappers and the tests read it from the dispatcher).
// An entry validates its inputs once (csrc/common/checks.h) and calls the kernel (csrc/{cpu,cuda}/) or the composed
// solver (csrc/<op>.cpp) of its device. A CPU-only build registers, for the CUDA key, a kernel that says how to
// rebuild. Autograd, for the ops users differentiate through, is a C++ kernel on the Autograd key in the op's file
// (a Python one would cost every call, grad or not); fake (meta) kernels are registered in Python, next to each
// wrapper (lowrankedit/ops/).
#include <torch/library.h>

namespace lowrankedit {

// Registered for the CUDA key of every op in a build without CUDA kernels.
void cuda_not_built(const c10::OperatorHandle& op, torch::jit::Stack* stack);

}  // namespace lowrankedit

#ifdef WITH_CUDA
#define LOWRANKEDIT_IMPL(name, cpu_fn, cuda_fn)                      \
  TORCH_LIBRARY_IMPL(lowrankedit, CPU, m) { m.impl(#name, cpu_fn); } \
  TORCH_LIBRARY_IMPL(lowrankedit, CUDA, m) { m.impl(#name, cuda_fn); }
#else
#define LOWRANKEDIT_IMPL(name, cpu_fn, cuda_fn)                      \
  TORCH_LIBRARY_IMPL(lowrankedit, CPU, m) { m.impl(#name, cpu_fn); } \
  TORCH_LIBRARY_IMPL(lowrankedit, CUDA, m) {                         \
    m.impl(#name, torch::CppFunction::makeFromBoxedFunction<&lowrankedit::cuda_not_built>()); \
  }
#endif
