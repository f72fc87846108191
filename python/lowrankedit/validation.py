"""Argument checks shared by every public function outside the ops (the ops check their own inputs in C++).

Each check returns the cleaned value or raises with one message that names the function (``who``), the argument,
what was expected and what was received, e.g.
``rpca: expected max_iter to be an int >= 1, got True (bool)``. Nothing is clamped or truncated: a bool is not an
int, ``64.9`` is not a size, NaN and Inf are not numbers here.
"""
import math
import numbers

import torch


class ArgumentError(TypeError, ValueError):
    """A bad argument to a public function. Both a ``TypeError`` and a ``ValueError``, so code that catches
    either (wrong type, wrong value) catches it."""


def _got(value):
    """How a received value is shown: its repr, and its type where the repr alone hides it."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    if isinstance(value, (bool, float)) or not isinstance(value, (int, str)):
        text = f"{text} ({type(value).__name__})"
    return text


def _bounds(lo, hi, lo_open=False, hi_open=False):
    def num(v):
        return f"{v:g}" if isinstance(v, float) else str(v)

    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{num(lo)}, {num(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {num(lo)}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {num(hi)}"
    return ""


def integer(value, name, who, *, min=None, max=None):
    """An ``int`` (any ``numbers.Integral`` but ``bool``) in ``[min, max]``; returns a Python int."""
    what = "an int" + (f" {_bounds(min, max)}" if min is not None or max is not None else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentError(f"{who}: expected {name} to be {what}, got {_got(value)}")
    v = int(value)
    if (min is not None and v < min) or (max is not None and v > max):
        raise ArgumentError(f"{who}: expected {name} to be {what}, got {v}")
    return v


def real(value, name, who, *, min=None, max=None, min_open=False, max_open=False):
    """A finite real number (not a bool, not NaN or Inf) in the given bounds; returns a Python float."""
    what = "a finite number" + (f" {_bounds(min, max, min_open, max_open)}" if min is not None or max is not None
                                else "")
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype == torch.bool:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentError(f"{who}: expected {name} to be {what}, got {_got(value)}")
    v = float(value)
    if not math.isfinite(v):
        raise ArgumentError(f"{who}: expected {name} to be {what}, got {v}")
    if min is not None and (v < min or (min_open and v == min)):
        raise ArgumentError(f"{who}: expected {name} to be {what}, got {v:g}")
    if max is not None and (v > max or (max_open and v == max)):
        raise ArgumentError(f"{who}: expected {name} to be {what}, got {v:g}")
    return v


def positive(value, name, who):
    """A finite real ``> 0``."""
    return real(value, name, who, min=0.0, min_open=True)


def probability(value, name, who):
    """A finite real in ``[0, 1]``."""
    return real(value, name, who, min=0.0, max=1.0)


def boolean(value, name, who):
    """A ``bool`` (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise ArgumentError(f"{who}: expected {name} to be a bool, got {_got(value)}")
    return value


def choice(value, name, who, options):
    """One of ``options``."""
    if not isinstance(value, str) or value not in options:
        raise ArgumentError(f"{who}: expected {name} in {tuple(options)}, got {_got(value)}")
    return value


def shape(value, name, who, *, ndim=None, min=1):
    """A shape: a sequence of ints ``>= min`` (``ndim`` of them when given); a single int counts as ``(n,)``
    only when ``ndim`` is None or 1. Returns a tuple of Python ints."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and ndim in (None, 1):
        value = (value,)
    if isinstance(value, torch.Size):
        value = tuple(value)
    if not isinstance(value, (tuple, list)):
        raise ArgumentError(f"{who}: expected {name} to be a shape (a tuple of ints), got {_got(value)}")
    if ndim is not None and len(value) != ndim:
        raise ArgumentError(f"{who}: expected {name} to have {ndim} entries, got {_got(value)}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or int(v) < min:
            raise ArgumentError(f"{who}: expected {name} to be a tuple of ints >= {min}, got {_got(value)}")
        out.append(int(v))
    return tuple(out)


def tensor(value, name, who, *, ndim=None, floating=True, finite=True):
    """A ``torch.Tensor``; floating point (when ``floating``), of ``ndim`` dimensions (an int or a tuple of the
    allowed ones), with no NaN or Inf (when ``finite``). Returns it."""
    if not isinstance(value, torch.Tensor):
        raise ArgumentError(f"{who}: expected {name} to be a torch.Tensor, got {_got(value)}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.dim() not in allowed:
            dims = " or ".join(map(str, allowed))
            raise ArgumentError(f"{who}: expected {name} with {dims} dimensions, got shape {tuple(value.shape)}")
    if floating and not value.is_floating_point():
        raise ArgumentError(f"{who}: expected {name} to be floating point, got dtype {value.dtype}")
    if finite:
        finite_values(value, name, who)
    return value


def finite_values(value, name, who):
    """Raise when a tensor holds NaN or Inf, saying how many and where the first one is."""
    if value.is_floating_point() or value.is_complex():
        bad = ~torch.isfinite(value)
        if bool(bad.any()):
            first = tuple(int(i) for i in bad.nonzero()[0].tolist())
            kinds = []
            if bool(torch.isnan(value).any()):
                kinds.append("NaN")
            if bool(torch.isinf(value).any()):
                kinds.append("Inf")
            raise ArgumentError(f"{who}: expected {name} to be finite, got {int(bad.sum())} {' and '.join(kinds)} "
                             f"entries (the first at index {first})")
    return value
