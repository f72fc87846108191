#pragma once
#include <ATen/ATen.h>

#include <utility>

// X: (...) contiguous -> (Y: (...) = sign(X) * max(|X| - tau, 0), whether X holds a NaN or Inf). The finiteness test
// rides along in the same pass: a separate scan would read X twice.
std::pair<at::Tensor, bool> soft_threshold_cpu(const at::Tensor& X, double tau);
#ifdef WITH_CUDA
std::pair<at::Tensor, bool> soft_threshold_cuda(const at::Tensor& X, double tau);
#endif
