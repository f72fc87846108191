"""Plain-PyTorch float64 references of every op. Slow and obvious on purpose: the tests and benchmarks compare
the kernels against these. Each takes the same arguments as its op and computes in float64."""
import torch


def soft_threshold(X, tau):
    """``sign(X) * max(|X| - tau, 0)`` in float64."""
    X = X.double()
    return torch.sign(X) * torch.clamp(X.abs() - float(tau), min=0)
