#pragma once
#include <ATen/ATen.h>

#include <tuple>

// J: (B, P, D) contiguous, w: (Bw, P) contiguous with Bw in {1, B} (Bw == 1: one mask shared by the batch),
// w already in J's accumulation dtype (float32 for float16/bfloat16 J, else J's dtype), validated in [0, 1]
// -> (G_in, G_out), each (B, D, D) in the accumulation dtype:
//    G_in[b] = J[b]^T diag(w[b]) J[b],   G_out[b] = J[b]^T diag(1 - w[b]) J[b]   (both exactly symmetric)
std::tuple<at::Tensor, at::Tensor> masked_gram_cpu(const at::Tensor& J, const at::Tensor& w);
#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> masked_gram_cuda(const at::Tensor& J, const at::Tensor& w);
#endif
