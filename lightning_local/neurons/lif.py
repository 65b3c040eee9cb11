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

The step is written once, in :func:`lif_update`; the neuron takes its current
from any synapse (:mod:`lightning_local.synapses`: dense or convolutional) and
has any shape. Entry points:

* :func:`lif_update` - one step given the whole input current and a spike
  function; used by every step-by-step simulation (online rules, attacks).
* :func:`lif_step` - one step under autograd (the ``reference`` backend).
* :func:`lif_sequence` - a whole sequence behind a backend switch: the fused scan
  with a hand-written backward pass (the caller projects the input of all time
  steps with one matmul or convolution; the scan then only does the element-wise
  recursion plus the recurrent synapse for REC; autograd records one node per
  layer instead of ~6 per time step, which is what makes BPTT fast), the Triton
  kernels on GPUs, or the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor

from ..synapses import LinearSynapse, Synapse
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
    """State of a LIF layer between time steps (each ``[batch, *neurons]``)."""

    syn: Tensor
    mem: Tensor
    spk: Tensor

    @classmethod
    def zeros(cls, batch: int, neurons: Union[int, Sequence[int]], like: Tensor) -> "LIFState":
        """All-zero state; ``neurons`` is a count or a shape (``[C, H, W]`` for a conv layer)."""
        shape = (neurons,) if isinstance(neurons, int) else tuple(neurons)
        zero = like.new_zeros(batch, *shape)
        return cls(zero, zero.clone(), zero.clone())


def lif_update(
    current: Tensor,
    state: LIFState,
    params: LIFParameters,
    fire: Callable[[Tensor], Tensor],
    recurrent: Optional[Synapse] = None,
    recurrent_weight: Optional[Tensor] = None,
) -> LIFState:
    """Eq. 1 for one step - the one place it is written in PyTorch.

    ``current`` is this step's feed-forward current ``W s^{l-1,t}``; ``recurrent`` (REC
    layers) adds ``V s^{l,t-1}`` (``recurrent_weight`` overrides its weight, e.g. the
    tensor an autograd function was given); ``fire`` maps the membrane to spikes (the
    Heaviside, the surrogate-gradient spike, or a smooth stand-in). The reset term is
    detached. Every simulation uses this function: the fused scan's forward, the
    ``reference`` backend, the online rules' step-by-step simulation and the attack's
    smoothed network. (The Triton kernels of :mod:`.triton_lif` spell the same
    arithmetic, in the same order, in kernel code; tests hold them to the scan.)
    """
    syn = torch.add(current, state.syn, alpha=params.alpha)
    if recurrent is not None:
        syn = recurrent.transmit(state.spk, recurrent_weight, add_to=syn)
    mem = torch.add(syn, state.mem, alpha=params.beta).sub_(state.spk.detach(), alpha=params.v_th)
    return LIFState(syn, mem, fire(mem))


def heaviside(params: LIFParameters) -> Callable[[Tensor], Tensor]:
    """``fire`` for :func:`lif_update` without a gradient: ``H(u - V_th)`` in the membrane's dtype."""
    return lambda mem: torch.gt(mem, params.v_th).to(mem.dtype)


def surrogate_spike(params: LIFParameters) -> Callable[[Tensor], Tensor]:
    """``fire`` for :func:`lif_update` under autograd: ``H(u - V_th)`` with the surrogate derivative."""
    return lambda mem: spike(mem - params.v_th, params.surrogate, params.surrogate_scale)


def lif_step(
    current: Tensor,
    state: LIFState,
    params: LIFParameters,
    recurrent: Union[Synapse, Tensor, None] = None,
) -> LIFState:
    """Advance one time step under autograd; ``current`` is ``W s^{l-1,t}`` for this step.

    ``recurrent`` (REC layers) is the recurrent synapse, or a dense ``V`` ``[n, n]``.
    Returns the new state; its ``spk`` field holds this step's spikes.
    """
    recurrence = as_recurrence(recurrent) if recurrent is not None else None
    return lif_update(current, state, params, surrogate_spike(params), recurrence)


def as_recurrence(recurrent: Union[Synapse, Tensor]) -> Synapse:
    """The recurrent synapse itself, or a dense ``V`` wrapped as a :class:`~lightning_local.synapses.LinearSynapse`."""
    return recurrent if isinstance(recurrent, Synapse) else LinearSynapse.wrapping(recurrent)


class _LIFScan(torch.autograd.Function):
    """Fused forward/backward of the LIF recursion over a whole sequence (any neuron shape)."""

    @staticmethod
    def forward(ctx, currents: Tensor, recurrent_weight: Optional[Tensor], params: LIFParameters, recurrent: Optional[Synapse]):  # type: ignore[override]
        state = LIFState.zeros(currents.shape[1], currents.shape[2:], currents)
        spikes, mems, _ = _scan_forward(currents, state, params, recurrent, recurrent_weight)
        # Only the surrogate derivative is needed backward, never u itself.
        ctx.save_for_backward(params.pseudo_derivative(mems), spikes if recurrent is not None else None, recurrent_weight)
        ctx.params, ctx.recurrent = params, recurrent
        return spikes, mems

    @staticmethod
    def backward(ctx, grad_spikes: Optional[Tensor], grad_mems: Optional[Tensor]):  # type: ignore[override]
        surrogate, spikes, recurrent_weight = ctx.saved_tensors
        params: LIFParameters = ctx.params
        recurrent: Optional[Synapse] = ctx.recurrent
        alpha, beta = params.alpha, params.beta
        steps = surrogate.shape[0]
        if grad_spikes is None:
            grad_spikes = torch.zeros_like(surrogate)
        if grad_mems is None:
            grad_mems = torch.zeros_like(surrogate)
        grad_currents = torch.empty_like(surrogate)
        g_mem = surrogate.new_zeros(surrogate.shape[1:])
        g_syn = surrogate.new_zeros(surrogate.shape[1:])
        # The adjoint of eq. 1 (reset detached): g_u^t = ds/du psi^t + beta g_u^{t+1}, g_iota^t = g_u^t + alpha g_iota^{t+1}.
        for t in range(steps - 1, -1, -1):
            g_spk = grad_spikes[t]
            if recurrent is not None:
                # s^t feeds iota^{t+1} through V (the reset path is detached).
                g_spk = recurrent.backward(g_syn, recurrent_weight, add_to=g_spk)
            g_mem = torch.addcmul(grad_mems[t], g_spk, surrogate[t]).add_(g_mem, alpha=beta)
            g_syn = torch.add(g_mem, g_syn, alpha=alpha)
            grad_currents[t] = g_syn
        grad_recurrent = None
        if recurrent is not None and ctx.needs_input_grad[1]:
            grad_recurrent = recurrent_weight_grad(grad_currents, spikes, recurrent)
        return grad_currents, grad_recurrent, None, None


def _scan_forward(
    currents: Tensor, state: LIFState, params: LIFParameters, recurrent: Optional[Synapse], recurrent_weight: Optional[Tensor] = None
) -> tuple[Tensor, Tensor, LIFState]:
    """Spikes, membranes and final state of eq. 1 over ``currents`` from ``state`` (no autograd graph)."""
    spikes = torch.empty_like(currents)
    mems = torch.empty_like(currents)
    fire = heaviside(params)
    for t in range(currents.shape[0]):
        state = lif_update(currents[t], state, params, fire, recurrent, recurrent_weight)
        mems[t] = state.mem
        spikes[t] = state.spk
    return spikes, mems, state


def recurrent_weight_grad(grad_currents: Tensor, spikes: Tensor, recurrent: Optional[Synapse] = None) -> Tensor:
    """``dL/dV = sum_t g_iota^t (s^{t-1})^T`` in one call over all steps (dense ``V`` unless ``recurrent`` is given)."""
    if recurrent is None:
        neurons = spikes.shape[-1]
        return grad_currents[1:].reshape(-1, neurons).t() @ spikes[:-1].reshape(-1, neurons).to(grad_currents.dtype)
    return recurrent.weight_gradient(grad_currents[1:], spikes[:-1])


def _reference_sequence(currents: Tensor, params: LIFParameters, recurrent: Optional[Synapse]) -> tuple[Tensor, Tensor]:
    """:func:`lif_step` over time, differentiated by autograd (the slow, obviously-correct backend)."""
    state = LIFState.zeros(currents.shape[1], currents.shape[2:], currents)
    spikes, mems = [], []
    for current in currents:
        state = lif_step(current, state, params, recurrent)
        spikes.append(state.spk)
        mems.append(state.mem)
    return torch.stack(spikes), torch.stack(mems)


def lif_sequence(
    currents: Tensor,
    params: LIFParameters,
    recurrent: Union[Synapse, Tensor, None] = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Run the LIF recursion over ``currents`` ``[T, batch, *neurons]``.

    ``currents[t]`` is the feed-forward input ``W s^{l-1,t}`` (neurons of any shape:
    ``[n]`` for dense layers, ``[C, H, W]`` for convolutional ones); the recurrent
    term (``recurrent``: the layer's recurrent synapse, or a dense ``V``) is added
    inside the scan. Returns ``(spikes, membrane)``, both shaped like ``currents``;
    the membrane is ``u^t`` before the reset it triggers (snnTorch's ``mem``).

    ``backend`` (see :mod:`.backends`): ``scan`` (this module's fused scan),
    ``triton`` (:mod:`.triton_lif`; ``triton_step``/``triton_persistent`` pick
    its REC kernel; dense recurrence only), ``reference`` (:func:`lif_step` under
    autograd) or ``auto`` (Triton on CUDA when it is installed and the recurrence is
    dense or absent, else the scan). All give the same spikes, membranes and gradients.
    """
    recurrence, backend = _prepare(currents, recurrent, backend)
    if backend == "scan":
        weight = recurrence.weight if recurrence is not None else None
        return _LIFScan.apply(currents, weight, params, recurrence)
    if backend == "reference":
        return _reference_sequence(currents, params, recurrence)
    from .triton_lif import triton_lif_sequence

    steps, batch = currents.shape[:2]
    spikes, mems = triton_lif_sequence(
        currents.reshape(steps, batch, -1), params, recurrence.weight if recurrence is not None else None,
        rec_impl=backend.partition("_")[2] or "auto",
    )
    return spikes.view_as(currents), mems.view_as(currents)


@torch.no_grad()
def lif_sequence_from(
    currents: Tensor,
    state: LIFState,
    params: LIFParameters,
    recurrent: Union[Synapse, Tensor, None] = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, LIFState]:
    """:func:`lif_sequence` from a given ``state`` instead of zero, forward only (no gradient).

    For simulations that cut a sequence into blocks and carry the state across them (e-prop's
    ``sequence`` schedule): the blocks' spikes and membranes equal the unsplit sequence's.
    Returns ``(spikes, membrane, state after the last step)``. The Triton backends run their
    forward kernels (one launch per layer and block, FF and persistent REC); ``scan`` and
    ``reference`` the loop of :func:`lif_update`.
    """
    recurrence, backend = _prepare(currents, recurrent, backend)
    if backend in ("scan", "reference"):
        return _scan_forward(currents, state, params, recurrence)
    from .triton_lif import triton_lif_sequence_from

    steps, batch = currents.shape[:2]
    flat = LIFState(*(x.reshape(batch, -1) for x in state))
    spikes, mems, final = triton_lif_sequence_from(
        currents.reshape(steps, batch, -1), flat, params, recurrence.weight if recurrence is not None else None,
        rec_impl=backend.partition("_")[2] or "auto",
    )
    return spikes.view_as(currents), mems.view_as(currents), LIFState(*(x.view_as(s) for x, s in zip(final, state)))


def _prepare(currents: Tensor, recurrent: Union[Synapse, Tensor, None], backend: str) -> tuple[Optional[Synapse], str]:
    """Check the shapes of a scan's inputs; return its recurrent synapse and concrete backend."""
    if currents.dim() < 3:
        raise ValueError(f"lif_sequence expects currents of shape [T, batch, *neurons], got {tuple(currents.shape)}.")
    from .backends import resolve_backend  # late: backends may import Triton

    recurrence = as_recurrence(recurrent) if recurrent is not None else None
    neurons = tuple(currents.shape[2:])
    if recurrence is not None and (tuple(recurrence.in_shape) != neurons or tuple(recurrence.out_shape) != neurons):
        raise ValueError(
            f"The recurrent synapse maps {tuple(recurrence.in_shape)} -> {tuple(recurrence.out_shape)}, "
            f"but the layer's neurons are {neurons}: it must map them onto themselves."
        )
    dense = recurrence is None or (isinstance(recurrence, LinearSynapse) and currents.dim() == 3)
    return recurrence, resolve_backend(backend, currents.device, dense_recurrence=dense)
