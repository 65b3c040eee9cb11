"""Surrogate derivatives of the Heaviside spike function.

The forward pass of every spiking nonlinearity here is the Heaviside step
``H(x) = 1[x > 0]`` (as in snnTorch); only the derivative used for learning is
replaced. The derivative is a plain function of ``x = u - V_th`` so that the
fused LIF scan, the per-step API and the local learning rules (whose
"pseudo-derivative" is exactly this function) share one definition.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

SurrogateDerivative = Callable[[Tensor, float], Tensor]


def fast_sigmoid_derivative(x: Tensor, slope: float) -> Tensor:
    """SuperSpike / snnTorch ``fast_sigmoid``: ``1 / (slope * |x| + 1)^2``."""
    return (slope * x.abs() + 1.0).reciprocal().square()


def atan_derivative(x: Tensor, alpha: float) -> Tensor:
    """snnTorch ``atan``: ``alpha / 2 / (1 + (pi / 2 * alpha * x)^2)``."""
    return (alpha / 2.0) / (1.0 + (math.pi / 2.0 * alpha * x).square())


SURROGATES: dict[str, SurrogateDerivative] = {
    "fast_sigmoid": fast_sigmoid_derivative,
    "atan": atan_derivative,
}


def get_surrogate(name: str) -> SurrogateDerivative:
    """Return the surrogate derivative called ``name`` or raise a clear error."""
    try:
        return SURROGATES[name]
    except KeyError:
        raise ValueError(
            f"Unknown surrogate gradient {name!r}: choose one of {sorted(SURROGATES)}."
        ) from None


class SpikeFunction(torch.autograd.Function):
    """Heaviside forward, surrogate derivative backward (for step-by-step use)."""

    @staticmethod
    def forward(ctx, x: Tensor, surrogate: str, scale: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate, ctx.scale = surrogate, scale
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_output * get_surrogate(ctx.surrogate)(x, ctx.scale), None, None


def spike(x: Tensor, surrogate: str = "fast_sigmoid", scale: float = 25.0) -> Tensor:
    """Emit spikes ``H(x)`` with the named surrogate derivative."""
    return SpikeFunction.apply(x, surrogate, scale)
