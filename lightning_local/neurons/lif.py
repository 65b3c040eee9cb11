"""The paper's current-based LIF neuron (eq. 1) as pure functions.

For one layer with input spikes ``s^{l-1,t}``, forward weights ``W`` and (REC
networks only) recurrent weights ``V``::

    iota^t = alpha * iota^{t-1} + W s^{l-1,t} + V s^{l,t-1}      alpha = exp(-1/tau_syn)
    u^t    = beta  * u^{t-1}    + iota^t - V_th * s^{l,t-1}      beta  = exp(-1/tau_mem)
    s^t    = H(u^t - V_th)

The reset term ``V_th * s^{t-1}`` subtracts the threshold one step after a
spike and is *detached* from the gradient, exactly as snnTorch's ``Synaptic`` /
``RSynaptic`` neurons (``reset_mechanism="subtract"``, ``reset_delay=True``)
do. The spike derivative is a surrogate (see :mod:`.surrogate`).

Two entry points share these equations:

* :func:`lif_step` - one time step, differentiable through autograd; used by
  online learning rules that must act every step.
* :func:`lif_sequence` - a whole sequence as one fused scan with a hand-written
  backward pass. The caller projects the input of all time steps with one
  matmul; the scan then only does the element-wise recursion (plus the
  recurrent matmul for REC). Autograd records one node per layer instead of
  ~6 per time step, which is what makes BPTT fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .surrogate import get_surrogate, spike


@dataclass(frozen=True)
class LIFParameters:
    """Constants of the LIF neuron.

    The paper's Table VII gives the per-step decay factors directly, so they are
    the canonical fields; :meth:`from_time_constants` builds them from time
    constants (``alpha = exp(-1/tau_syn)``, ``beta = exp(-1/tau_mem)``).

    Args:
        alpha: synaptic-current decay per step, in ``[0, 1]`` (``0``: no memory, ``1``: no leak).
        beta: membrane decay per step, in ``[0, 1]``.
        v_th: firing threshold ``V_th`` (also the amount subtracted on reset).
        surrogate: name of the surrogate derivative (``fast_sigmoid`` or ``atan``).
        surrogate_scale: its steepness (slope for ``fast_sigmoid``, alpha for ``atan``).
    """

    alpha: float = math.exp(-1.0 / 5.0)
    beta: float = math.exp(-1.0 / 10.0)
    v_th: float = 1.0
    surrogate: str = "fast_sigmoid"
    surrogate_scale: float = 25.0

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"The decay factor {name} must lie in [0, 1] (got {value}).")
        if not self.v_th > 0:
            raise ValueError(f"The threshold v_th must be positive (got {self.v_th}).")
        get_surrogate(self.surrogate)  # fail early on an unknown name

    @classmethod
    def from_time_constants(cls, tau_syn: float, tau_mem: float, **kwargs) -> "LIFParameters":
        """Parameters from time constants in steps: ``alpha = exp(-1/tau_syn)``, ``beta = exp(-1/tau_mem)``."""
        return cls(alpha=decay_from_time_constant(tau_syn, "tau_syn"), beta=decay_from_time_constant(tau_mem, "tau_mem"), **kwargs)

    @property
    def steady_state_gain(self) -> float:
        """Membrane response to a constant unit input current: ``1 / ((1 - alpha)(1 - beta))``."""
        leak = (1.0 - self.alpha) * (1.0 - self.beta)
        return math.inf if leak == 0.0 else 1.0 / leak

    def pseudo_derivative(self, mem: Tensor) -> Tensor:
        """Surrogate ``ds/du`` evaluated at membrane potential ``mem``."""
        return get_surrogate(self.surrogate)(mem - self.v_th, self.surrogate_scale)


def decay_from_time_constant(tau: float, name: str = "tau") -> float:
    """``exp(-1/tau)`` for a positive time constant ``tau`` in steps."""
    if not tau > 0:
        raise ValueError(f"The time constant {name} must be positive (got {tau}).")
    return math.exp(-1.0 / tau)


class LIFState(NamedTuple):
    """State of a LIF layer between time steps (each ``[batch, neurons]``)."""

    syn: Tensor
    mem: Tensor
    spk: Tensor

    @classmethod
    def zeros(cls, batch: int, neurons: int, like: Tensor) -> "LIFState":
        zero = like.new_zeros(batch, neurons)
        return cls(zero, zero.clone(), zero.clone())


def lif_step(
    current: Tensor,
    state: LIFState,
    params: LIFParameters,
    recurrent_weight: Optional[Tensor] = None,
) -> LIFState:
    """Advance one time step; ``current`` is ``W s^{l-1,t}`` for this step.

    Returns the new state; its ``spk`` field holds this step's spikes.
    """
    syn = params.alpha * state.syn + current
    if recurrent_weight is not None:
        syn = syn + state.spk @ recurrent_weight.t()
    mem = params.beta * state.mem + syn - params.v_th * state.spk.detach()
    spk = spike(mem - params.v_th, params.surrogate, params.surrogate_scale)
    return LIFState(syn, mem, spk)


class _LIFScan(torch.autograd.Function):
    """Fused forward/backward of the LIF recursion over a whole sequence."""

    @staticmethod
    def forward(ctx, currents: Tensor, recurrent_weight: Optional[Tensor], params: LIFParameters):  # type: ignore[override]
        steps, batch, neurons = currents.shape
        spikes = torch.empty_like(currents)
        mems = torch.empty_like(currents)
        syn = currents.new_zeros(batch, neurons)
        mem = currents.new_zeros(batch, neurons)
        spk = currents.new_zeros(batch, neurons)
        alpha, beta, v_th = params.alpha, params.beta, params.v_th
        rec_t = recurrent_weight.t() if recurrent_weight is not None else None
        for t in range(steps):
            syn = torch.add(currents[t], syn, alpha=alpha)
            if rec_t is not None:
                syn = syn.addmm(spk, rec_t)
            mem = torch.add(syn, mem, alpha=beta).sub_(spk, alpha=v_th)
            mems[t] = mem
            spk = spikes[t].copy_(mem > v_th)
        # Only the surrogate derivative is needed backward, never u itself.
        ctx.save_for_backward(params.pseudo_derivative(mems), spikes if rec_t is not None else None, recurrent_weight)
        ctx.params = params
        return spikes, mems

    @staticmethod
    def backward(ctx, grad_spikes: Optional[Tensor], grad_mems: Optional[Tensor]):  # type: ignore[override]
        surrogate, spikes, recurrent_weight = ctx.saved_tensors
        params: LIFParameters = ctx.params
        alpha, beta = params.alpha, params.beta
        steps = surrogate.shape[0]
        if grad_spikes is None:
            grad_spikes = torch.zeros_like(surrogate)
        if grad_mems is None:
            grad_mems = torch.zeros_like(surrogate)
        grad_currents = torch.empty_like(surrogate)
        g_mem = surrogate.new_zeros(surrogate.shape[1:])
        g_syn = surrogate.new_zeros(surrogate.shape[1:])
        for t in range(steps - 1, -1, -1):
            g_spk = grad_spikes[t]
            if recurrent_weight is not None:
                # s^t feeds iota^{t+1} through V (the reset path is detached).
                g_spk = g_spk.addmm(g_syn, recurrent_weight)
            g_mem = torch.addcmul(grad_mems[t], g_spk, surrogate[t]).add_(g_mem, alpha=beta)
            g_syn = torch.add(g_mem, g_syn, alpha=alpha)
            grad_currents[t] = g_syn
        grad_recurrent = None
        if recurrent_weight is not None and ctx.needs_input_grad[1]:
            grad_recurrent = recurrent_weight_grad(grad_currents, spikes)
        return grad_currents, grad_recurrent, None


def recurrent_weight_grad(grad_currents: Tensor, spikes: Tensor) -> Tensor:
    """``dL/dV = sum_t g_iota^t (s^{t-1})^T`` as one matmul over all steps."""
    neurons = spikes.shape[-1]
    return grad_currents[1:].reshape(-1, neurons).t() @ spikes[:-1].reshape(-1, neurons).to(grad_currents.dtype)


def _reference_sequence(currents: Tensor, params: LIFParameters, recurrent_weight: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """:func:`lif_step` over time, differentiated by autograd (the slow, obviously-correct backend)."""
    state = LIFState.zeros(currents.shape[1], currents.shape[2], currents)
    spikes, mems = [], []
    for current in currents:
        state = lif_step(current, state, params, recurrent_weight)
        spikes.append(state.spk)
        mems.append(state.mem)
    return torch.stack(spikes), torch.stack(mems)


def lif_sequence(
    currents: Tensor,
    params: LIFParameters,
    recurrent_weight: Optional[Tensor] = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Run the LIF recursion over ``currents`` ``[T, batch, neurons]``.

    ``currents[t]`` is the feed-forward input ``W s^{l-1,t}``; the recurrent
    term (if ``recurrent_weight`` is given) is added inside the scan.
    Returns ``(spikes, membrane)``, both ``[T, batch, neurons]``; the
    membrane is ``u^t`` before the reset it triggers (snnTorch's ``mem``).

    ``backend`` (see :mod:`.backends`): ``scan`` (this module's fused scan),
    ``triton`` (:mod:`.triton_lif`; ``triton_step``/``triton_persistent`` pick
    its REC kernel), ``reference`` (:func:`lif_step` under autograd) or ``auto``
    (Triton on CUDA when it is installed, else the scan). All give the same
    spikes, membranes and gradients.
    """
    if currents.dim() != 3:
        raise ValueError(f"lif_sequence expects currents of shape [T, batch, neurons], got {tuple(currents.shape)}.")
    from .backends import resolve_backend  # late: backends may import Triton

    backend = resolve_backend(backend, currents.device)
    if backend == "scan":
        return _LIFScan.apply(currents, recurrent_weight, params)
    if backend == "reference":
        return _reference_sequence(currents, params, recurrent_weight)
    from .triton_lif import triton_lif_sequence

    return triton_lif_sequence(currents, params, recurrent_weight, rec_impl=backend.partition("_")[2] or "auto")
