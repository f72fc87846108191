// The only PYBIND11_MODULE. Each op lives in pyext/<op>.cpp and exposes bind_<op>(m); add one line per op below.
#include <torch/extension.h>

void bind_soft_threshold(pybind11::module_& m);
void bind_panda_grad(pybind11::module_& m);
void bind_generalized_eigh(pybind11::module_& m);
void bind_singular_value_threshold(pybind11::module_& m);
void bind_rpca_step(pybind11::module_& m);
void bind_masked_gram(pybind11::module_& m);
void bind_rpca_iterate(pybind11::module_& m);
void bind_generalized_eigh_topk(pybind11::module_& m);
void bind_rpca_ialm(pybind11::module_& m);
// [ops: declarations]

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "lowrankedit compiled kernels (CPU and, when built with it, CUDA)";
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
  bind_soft_threshold(m);
  bind_panda_grad(m);
  bind_generalized_eigh(m);
  bind_singular_value_threshold(m);
  bind_rpca_step(m);
  bind_masked_gram(m);
  bind_rpca_iterate(m);
  bind_generalized_eigh_topk(m);
  bind_rpca_ialm(m);
  // [ops: bindings]
}
