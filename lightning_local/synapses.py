"""Synapses: the weighted maps that turn presynaptic spikes into a neuron's input current.

A LIF layer (:class:`~lightning_local.models.network.LIFLayer`) is a synapse that
produces the current ``W x`` plus the neuron dynamics of eq. 1
(:mod:`lightning_local.neurons`), which do not care how the current was made. A
synapse is *linear in its weight*, which is all a learning rule needs to know about
it. Rules and analyses use it only through this interface, never through
``.weight`` directly:

* :meth:`Synapse.forward` / :meth:`Synapse.transmit` - the current for presynaptic
  input ``x`` of shape ``[*leading, *in_shape]`` (any leading dimensions: time,
  batch), ``[*leading, *out_shape]`` out. A whole sequence is one call (one matmul
  or one convolution over ``T x B`` samples).
* :meth:`Synapse.backward` - the error of the input, ``dE/dx``, given the error of
  the current; through ``W`` itself or through any tensor of ``W``'s shape (the
  fixed random matrices of feedback alignment).
* :meth:`Synapse.weight_gradient` - ``dE/dW`` summed over the leading dimensions,
  given the error of the current and the presynaptic values (spikes for BPTT, the
  presynaptic traces for e-prop and DECOLLE: both enter bilinearly).
* :meth:`Synapse.with_feedback` - ``transmit`` whose autograd backward sends the
  error through a fixed feedback tensor (feedback alignment).

Two synapses are built in: :class:`LinearSynapse` (dense, as in the paper's FC
networks) and :class:`ConvSynapse` (2-D convolution, the paper's Appendix A).
Both are bias-free like the paper's layers. A recurrent synapse is the same kind
of module mapping a layer's own ``out_shape`` to itself.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .sparse_frames import SparseFrames

Shape = tuple[int, ...]


def as_shape(shape: Union[int, Sequence[int]]) -> Shape:
    """``(n,)`` for an int, else the tuple of the sequence."""
    return (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)


class Synapse(nn.Module):
    """Base class: a bias-free map ``x -> W x`` that is linear in ``W`` (see the module docstring).

    Subclasses set :attr:`in_shape`, :attr:`out_shape` and the parameter ``weight``,
    and implement :meth:`transmit`, :meth:`backward` and :meth:`weight_gradient`
    for inputs of shape ``[N, *in_shape]`` (one leading dimension); this class
    handles any number of leading dimensions.
    """

    in_shape: Shape
    out_shape: Shape
    weight: nn.Parameter

    @property
    def in_features(self) -> int:
        """Number of presynaptic units, ``prod(in_shape)``."""
        return math.prod(self.in_shape)

    @property
    def out_features(self) -> int:
        """Number of postsynaptic units, ``prod(out_shape)``."""
        return math.prod(self.out_shape)

    def forward(self, x: Tensor) -> Tensor:
        """The current ``W x`` for ``x`` ``[*leading, *in_shape]``."""
        return self.transmit(x)

    # --------------------------------------------------------------- interface
    def transmit(self, x: Tensor, weight: Optional[Tensor] = None, add_to: Optional[Tensor] = None) -> Tensor:
        """``weight x`` (default ``W``) for ``x`` ``[*leading, *in_shape]`` -> ``[*leading, *out_shape]``.

        With ``add_to`` (same shape as the result) returns ``add_to + weight x`` (fused where the kind allows).
        """
        lead = x.shape[: x.dim() - len(self.in_shape)]
        out = self._transmit(x.reshape(-1, *self.in_shape), self.weight if weight is None else weight)
        out = out.reshape(*lead, *self.out_shape)
        return out if add_to is None else out.add_(add_to)

    def backward(self, error: Tensor, weight: Optional[Tensor] = None, add_to: Optional[Tensor] = None) -> Tensor:
        """``dE/dx`` from ``dE/d current`` ``[*leading, *out_shape]``, through ``weight`` (default ``W``).

        With ``add_to`` (same shape as the result) returns ``add_to + dE/dx``.
        """
        lead = error.shape[: error.dim() - len(self.out_shape)]
        out = self._backward(error.reshape(-1, *self.out_shape), self.weight if weight is None else weight)
        out = out.reshape(*lead, *self.in_shape)
        return out if add_to is None else out.add_(add_to)

    def weight_gradient(self, error: Tensor, presynaptic: Tensor, add_to: Optional[Tensor] = None, alpha: float = 1.0) -> Tensor:
        """``alpha * sum_n error_n (x) presynaptic_n``: ``dE/dW`` summed over the leading dimensions.

        ``error`` is ``[*leading, *out_shape]``, ``presynaptic`` ``[*leading, *in_shape]``.
        With ``add_to`` (a tensor of ``W``'s shape) the result is added into it in place.
        """
        grad = self._weight_gradient(
            error.reshape(-1, *self.out_shape), presynaptic.reshape(-1, *self.in_shape).to(error.dtype), add_to, alpha
        )
        return grad

    def with_feedback(self, x: Tensor, feedback: Tensor) -> Tensor:
        """:meth:`transmit` whose backward sends the input's error through ``feedback`` instead of ``W``."""
        if isinstance(x, SparseFrames):  # input frames: no error to send back, the weight gradient is transmit's
            return self.transmit(x)
        return _FeedbackTransmit.apply(x, self.weight, feedback, self)

    # ---------------------------------------------------- per-kind operations
    def _transmit(self, x: Tensor, weight: Tensor) -> Tensor:
        raise NotImplementedError

    def _backward(self, error: Tensor, weight: Tensor) -> Tensor:
        raise NotImplementedError

    def _weight_gradient(self, error: Tensor, presynaptic: Tensor, add_to: Optional[Tensor], alpha: float) -> Tensor:
        raise NotImplementedError


class _FeedbackTransmit(torch.autograd.Function):
    """``synapse.transmit(x)`` with the input error routed through a fixed ``feedback`` (FA)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, feedback: Tensor, synapse: Synapse) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, feedback)
        ctx.synapse = synapse
        return synapse.transmit(x, weight)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        x, feedback = ctx.saved_tensors
        synapse: Synapse = ctx.synapse
        grad_x = synapse.backward(grad_out, feedback) if ctx.needs_input_grad[0] else None
        grad_w = synapse.weight_gradient(grad_out, x) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None, None


class LinearSynapse(Synapse):
    """Dense all-to-all synapse ``W in R^{out x prod(in_shape)}`` (a ``[*in_shape]`` input is flattened).

    Initialised like ``nn.Linear`` (Kaiming-uniform, ``a = sqrt(5)``).

    Args:
        in_shape: presynaptic units (an int, or the shape of a convolutional layer's output).
        out_features: postsynaptic neurons.
    """

    def __init__(self, in_shape: Union[int, Sequence[int]], out_features: int) -> None:
        super().__init__()
        self.in_shape = as_shape(in_shape)
        self.out_shape = (int(out_features),)
        self.weight = nn.Parameter(torch.empty(out_features, self.in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    @classmethod
    def wrapping(cls, weight: Tensor) -> "LinearSynapse":
        """A synapse around an existing ``[out, in]`` tensor (shared, not registered as a parameter)."""
        synapse = cls.__new__(cls)
        nn.Module.__init__(synapse)
        synapse.in_shape, synapse.out_shape = (weight.shape[1],), (weight.shape[0],)
        synapse.weight = weight
        return synapse

    def transmit(self, x: Tensor, weight: Optional[Tensor] = None, add_to: Optional[Tensor] = None) -> Tensor:
        """``x W^T``; with ``add_to`` (2-D input) ``add_to + x W^T`` in one ``addmm``.

        ``x`` may be :class:`~lightning_local.sparse_frames.SparseFrames` (binary input
        frames ``[B, T, F]``): two CSR matmuls instead of dense ones (see that module).
        """
        weight = self.weight if weight is None else weight
        if isinstance(x, SparseFrames):
            out = x.project(weight)
            return out if add_to is None else out.add_(add_to)
        if len(self.in_shape) > 1:
            x = x.flatten(x.dim() - len(self.in_shape))
        if add_to is not None and x.dim() == 2:
            return torch.addmm(add_to, x, weight.t())
        out = x @ weight.t()
        return out if add_to is None else out.add_(add_to)

    def backward(self, error: Tensor, weight: Optional[Tensor] = None, add_to: Optional[Tensor] = None) -> Tensor:
        """``error W``; with ``add_to`` (2-D error, flat input) ``add_to + error W`` in one ``addmm``."""
        weight = self.weight if weight is None else weight
        if add_to is not None and error.dim() == 2 and len(self.in_shape) == 1:
            return torch.addmm(add_to, error, weight)
        grad = error @ weight
        grad = grad.unflatten(-1, self.in_shape) if len(self.in_shape) > 1 else grad
        return grad if add_to is None else grad.add_(add_to)

    def weight_gradient(self, error: Tensor, presynaptic: Tensor, add_to: Optional[Tensor] = None, alpha: float = 1.0) -> Tensor:
        """``alpha * error^T presynaptic`` over all leading dimensions (see :meth:`Synapse.weight_gradient`)."""
        # Per-step calls of the online rules pass 2-D tensors: skip the reshapes and casts (dispatch costs).
        if error.dim() != 2 or presynaptic.dim() != 2:
            error = error.reshape(-1, self.out_features)
            presynaptic = presynaptic.reshape(error.shape[0], -1)
        if presynaptic.dtype != error.dtype:
            presynaptic = presynaptic.to(error.dtype)
        if add_to is not None:
            return add_to.addmm_(error.t(), presynaptic, alpha=alpha)
        grad = error.t() @ presynaptic
        return grad.mul_(alpha) if alpha != 1.0 else grad

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}, out_features={self.out_shape[0]}"


class ConvSynapse(Synapse):
    """2-D convolution ``W in R^{C_out x C_in x k x k}``: input ``[C_in, H, W]``, output ``[C_out, H', W']``.

    Initialised like ``nn.Conv2d`` (Kaiming-uniform, ``a = sqrt(5)``). The convolution,
    its input gradient and its weight gradient are PyTorch's own
    (``F.conv2d``, ``torch.nn.grad.conv2d_input`` / ``conv2d_weight``).

    Args:
        in_shape: ``(channels, height, width)`` of the input.
        out_channels: output channels.
        kernel_size: square kernel size.
        stride: stride.
        padding: zero padding on every side.
    """

    def __init__(self, in_shape: Sequence[int], out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.in_shape = as_shape(in_shape)
        if len(self.in_shape) != 3:
            raise ValueError(f"A convolution needs inputs of shape (channels, height, width), got {self.in_shape}.")
        if kernel_size < 1 or stride < 1 or padding < 0:
            raise ValueError(f"Invalid convolution: kernel_size {kernel_size}, stride {stride}, padding {padding}.")
        channels, height, width = self.in_shape
        out_h = (height + 2 * padding - kernel_size) // stride + 1
        out_w = (width + 2 * padding - kernel_size) // stride + 1
        if out_h < 1 or out_w < 1:
            raise ValueError(
                f"A {kernel_size}x{kernel_size} convolution (stride {stride}, padding {padding}) does not fit "
                f"an input of {height}x{width}: use fewer layers, a smaller kernel or a larger input."
            )
        self.out_shape = (int(out_channels), out_h, out_w)
        self.stride, self.padding, self.kernel_size = stride, padding, kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def _transmit(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.conv2d(x.to(weight.dtype), weight, stride=self.stride, padding=self.padding)

    def _backward(self, error: Tensor, weight: Tensor) -> Tensor:
        size = (error.shape[0], *self.in_shape)
        return torch.nn.grad.conv2d_input(size, weight, error, stride=self.stride, padding=self.padding)

    def _weight_gradient(self, error: Tensor, presynaptic: Tensor, add_to: Optional[Tensor], alpha: float) -> Tensor:
        grad = torch.nn.grad.conv2d_weight(presynaptic, self.weight.shape, error, stride=self.stride, padding=self.padding)
        if add_to is None:
            return grad.mul_(alpha) if alpha != 1.0 else grad
        return add_to.add_(grad, alpha=alpha)

    def extra_repr(self) -> str:
        return (
            f"in_shape={self.in_shape}, out_shape={self.out_shape}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
