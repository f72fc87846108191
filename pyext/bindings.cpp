// The only PYBIND11_MODULE: importing lowrankedit._C loads this library, whose static initializers register every
// op with the dispatcher (pyext/<op>.cpp, see pyext/registration.h); the module itself carries only the build
// facts and the callback-taking entries (rpca's progress bar, panda's data-parallel step), which a dispatcher
// schema cannot express.
#include <torch/extension.h>

#include "registration.h"

void bind_rpca_progress(pybind11::module_& m);
void bind_panda_step_reduced(pybind11::module_& m);

namespace lowrankedit {

void cuda_not_built(const c10::OperatorHandle& op, torch::jit::Stack*) {
  TORCH_CHECK(false, op.schema().name(), ": got a CUDA tensor, but lowrankedit was built without CUDA kernels; ",
              "rebuild on a machine with nvcc: `FORCE_CUDA=1 bash scripts/setup.sh` (or `FORCE_CUDA=1 pip install ",
              "--no-build-isolation .`)");
}

}  // namespace lowrankedit

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "lowrankedit compiled kernels (CPU and, when built with it, CUDA); the ops are torch.ops.lowrankedit.*";
#ifdef WITH_CUDA
  m.attr("cuda_compiled") = true;
#else
  m.attr("cuda_compiled") = false;
#endif
#ifdef _OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
  bind_rpca_progress(m);
  bind_panda_step_reduced(m);
}
