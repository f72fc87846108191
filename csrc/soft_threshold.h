#pragma once
#include <ATen/ATen.h>

// X: (...) contiguous -> Y: (...)   Y = sign(X) * max(|X| - tau, 0)
at::Tensor soft_threshold_cpu(const at::Tensor& X, double tau);
#ifdef WITH_CUDA
at::Tensor soft_threshold_cuda(const at::Tensor& X, double tau);
#endif
