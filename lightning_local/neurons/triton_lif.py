"""Triton kernels for the LIF scan of :mod:`.lif` (forward and backward).

The recursion, surrogate and detached reset are exactly those of
:class:`~lightning_local.neurons.lif._LIFScan`; only the execution differs:

* **FF** (no recurrent weights): one kernel launch per layer and direction for
  all ``T`` steps. Each program owns a block of ``(batch, neuron)`` elements and
  keeps ``iota``, ``u`` and ``s`` (backward: their adjoints) in registers while
  it walks over time, so each step costs one read of the input current and one
  write of spikes and membrane.
* **REC**: the recurrent matmul couples all neurons of a batch row every step.
  Two implementations:

  - ``"step"``: per step one cuBLAS ``mm`` (``s^{t-1} V^T``, backward
    ``g_iota^{t+1} V``) into a preallocated buffer plus one fused element-wise
    Triton kernel. No allocation and no host synchronisation inside the loop,
    so the loop can be captured in a CUDA graph.
  - ``"persistent"`` (hidden size <= :data:`PERSISTENT_MAX_NEURONS`): one launch
    for all ``T`` steps. Each program owns a block of batch rows and *all*
    neurons of those rows, so the recurrent matmul of a step only needs spikes
    its own program wrote in the previous step (a barrier, no grid sync).

The backward kernels recompute the surrogate derivative from the saved membrane
(the membrane is an output anyway), so nothing beyond the outputs is stored.
State is float32 (float64 for float64 tensors); inputs/outputs may also be bfloat16 (e.g. under
``--trainer.precision bf16-mixed``). The recurrent matmul runs in IEEE float32
unless ``torch.get_float32_matmul_precision()`` allows TF32 (``"high"``/``"medium"``).

On CPU tensors these kernels run only in Triton's interpreter
(``TRITON_INTERPRET=1`` set *before* this module is imported), which the tests use.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from .lif import LIFParameters, LIFState, recurrent_weight_grad
from .surrogate import SURROGATES

#: Elements per program of the element-wise kernels.
BLOCK = 256
#: Largest hidden size the persistent REC kernel accepts (all neurons of a row in one program).
PERSISTENT_MAX_NEURONS = 512
#: Surrogate names -> the integer the kernels branch on (compile-time constant).
SURROGATE_IDS = {"fast_sigmoid": 0, "atan": 1}
assert set(SURROGATE_IDS) == set(SURROGATES), "every surrogate of surrogate.py needs a Triton twin"

REC_IMPLEMENTATIONS = ("step", "persistent")


def interpreting() -> bool:
    """Whether Triton runs its kernels in the CPU interpreter (``TRITON_INTERPRET=1`` at import)."""
    return bool(triton.knobs.runtime.interpret)


def surrogate_constants(params: LIFParameters) -> tuple[int, float, float]:
    """(kernel id, a, b) with the host-side constants of :mod:`.surrogate`'s formulas.

    ``fast_sigmoid``: ``1 / (a|x| + 1)^2`` with ``a = slope``;
    ``atan``: ``b / (1 + (a x)^2)`` with ``a = pi/2 * alpha``, ``b = alpha/2`` (products
    taken in double precision, as torch does with Python scalars).
    """
    scale = params.surrogate_scale
    if params.surrogate == "fast_sigmoid":
        return SURROGATE_IDS["fast_sigmoid"], scale, 0.0
    return SURROGATE_IDS["atan"], math.pi / 2.0 * scale, scale / 2.0


# --------------------------------------------------------------------------- kernels
@triton.jit
def _load_constants(c_ptr):
    """alpha, beta, V_th and the two surrogate constants, stored in the state dtype."""
    return tl.load(c_ptr), tl.load(c_ptr + 1), tl.load(c_ptr + 2), tl.load(c_ptr + 3), tl.load(c_ptr + 4)


@triton.jit
def _surrogate(x, sg_a, sg_b, SURROGATE: tl.constexpr):
    """The surrogate derivative of :mod:`.surrogate` at ``x = u - V_th``."""
    if SURROGATE == 0:
        r = 1.0 / (sg_a * tl.abs(x) + 1.0)
        return r * r
    else:
        y = sg_a * x
        return sg_b / (1.0 + y * y)


@triton.jit
def _surrogate_kernel(x_ptr, out_ptr, n, c_ptr, SURROGATE: tl.constexpr, BLOCK: tl.constexpr):
    _, _, _, sg_a, sg_b = _load_constants(c_ptr)
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    tl.store(out_ptr + offs, _surrogate(x, sg_a, sg_b, SURROGATE), mask=mask)


@triton.jit
def _ff_forward_kernel(
    cur_ptr, spk_ptr, mem_ptr, M, T, c_ptr, syn0_ptr, mem0_ptr, spk0_ptr, synT_ptr, memT_ptr,
    HAS_STATE: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr,
):
    """All T steps of a FF layer; with ``HAS_STATE`` from the state ``*0`` (else zero), storing the final ``iota``/``u``."""
    alpha, beta, v_th, _, _ = _load_constants(c_ptr)
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    cur_ptrs = cur_ptr + offs
    spk_ptrs = spk_ptr + offs
    mem_ptrs = mem_ptr + offs
    if HAS_STATE:
        syn = tl.load(syn0_ptr + offs, mask=mask, other=0.0).to(ACC)
        mem = tl.load(mem0_ptr + offs, mask=mask, other=0.0).to(ACC)
        spk = tl.load(spk0_ptr + offs, mask=mask, other=0.0).to(ACC)
    else:
        syn = tl.zeros([BLOCK], dtype=ACC)
        mem = tl.zeros([BLOCK], dtype=ACC)
        spk = tl.zeros([BLOCK], dtype=ACC)
    for _ in range(T):
        x = tl.load(cur_ptrs, mask=mask, other=0.0).to(ACC)
        # Same operation order as the reference scan (iota first, reset from s^{t-1}).
        syn = tl.fma(syn, alpha, x)
        mem = tl.fma(mem, beta, syn) - v_th * spk
        spk = (mem > v_th).to(ACC)
        tl.store(mem_ptrs, mem.to(mem_ptr.dtype.element_ty), mask=mask)
        tl.store(spk_ptrs, spk.to(spk_ptr.dtype.element_ty), mask=mask)
        cur_ptrs += M
        spk_ptrs += M
        mem_ptrs += M
    if HAS_STATE:
        tl.store(synT_ptr + offs, syn, mask=mask)
        tl.store(memT_ptr + offs, mem, mask=mask)


@triton.jit
def _ff_backward_kernel(
    gspk_ptr, gmem_ptr, mem_ptr, gcur_ptr, M, T, last, c_ptr,
    SURROGATE: tl.constexpr, HAS_GSPK: tl.constexpr, HAS_GMEM: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr,
):
    alpha, beta, v_th, sg_a, sg_b = _load_constants(c_ptr)
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    start = last + offs  # offset of step T-1 (host-computed, 64-bit when large)
    gspk_ptrs = gspk_ptr + start
    gmem_ptrs = gmem_ptr + start
    mem_ptrs = mem_ptr + start
    gcur_ptrs = gcur_ptr + start
    g_mem = tl.zeros([BLOCK], dtype=ACC)
    g_syn = tl.zeros([BLOCK], dtype=ACC)
    for _ in range(T):
        u = tl.load(mem_ptrs, mask=mask, other=0.0).to(ACC)
        local = tl.zeros([BLOCK], dtype=ACC)
        if HAS_GMEM:
            local = tl.load(gmem_ptrs, mask=mask, other=0.0).to(ACC)
        if HAS_GSPK:
            g_spk = tl.load(gspk_ptrs, mask=mask, other=0.0).to(ACC)
            local = local + g_spk * _surrogate(u - v_th, sg_a, sg_b, SURROGATE)
        g_mem = tl.fma(g_mem, beta, local)
        g_syn = tl.fma(g_syn, alpha, g_mem)
        tl.store(gcur_ptrs, g_syn.to(gcur_ptr.dtype.element_ty), mask=mask)
        gspk_ptrs -= M
        gmem_ptrs -= M
        mem_ptrs -= M
        gcur_ptrs -= M


@triton.jit
def _rec_step_forward_kernel(
    cur_ptr, rec_ptr, prev_spk_ptr, syn_ptr, memstate_ptr, spk_ptr, mem_ptr, M, c_ptr, ACC: tl.constexpr, BLOCK: tl.constexpr,
):
    """One REC step: ``iota = (I^t + alpha iota) + rec``; ``rec = s^{t-1} V^T`` came from cuBLAS."""
    alpha, beta, v_th, _, _ = _load_constants(c_ptr)
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    x = tl.load(cur_ptr + offs, mask=mask, other=0.0).to(ACC)
    rec = tl.load(rec_ptr + offs, mask=mask, other=0.0).to(ACC)
    prev = tl.load(prev_spk_ptr + offs, mask=mask, other=0.0).to(ACC)
    syn = tl.fma(tl.load(syn_ptr + offs, mask=mask, other=0.0), alpha, x) + rec
    mem = tl.fma(tl.load(memstate_ptr + offs, mask=mask, other=0.0), beta, syn) - v_th * prev
    tl.store(syn_ptr + offs, syn, mask=mask)
    tl.store(memstate_ptr + offs, mem, mask=mask)
    tl.store(mem_ptr + offs, mem.to(mem_ptr.dtype.element_ty), mask=mask)
    tl.store(spk_ptr + offs, (mem > v_th).to(ACC).to(spk_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rec_step_backward_kernel(
    gspk_ptr, rec_ptr, gmem_ptr, mem_ptr, gmemstate_ptr, gsyn_ptr, gcur_ptr, M, c_ptr,
    SURROGATE: tl.constexpr, HAS_GSPK: tl.constexpr, HAS_GMEM: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr,
):
    """One REC step backward; ``rec = g_iota^{t+1} V`` came from cuBLAS."""
    alpha, beta, v_th, sg_a, sg_b = _load_constants(c_ptr)
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    g_spk = tl.load(rec_ptr + offs, mask=mask, other=0.0)
    if HAS_GSPK:
        g_spk = tl.load(gspk_ptr + offs, mask=mask, other=0.0).to(ACC) + g_spk
    u = tl.load(mem_ptr + offs, mask=mask, other=0.0).to(ACC)
    local = g_spk * _surrogate(u - v_th, sg_a, sg_b, SURROGATE)
    if HAS_GMEM:
        local = tl.load(gmem_ptr + offs, mask=mask, other=0.0).to(ACC) + local
    g_mem = tl.fma(tl.load(gmemstate_ptr + offs, mask=mask, other=0.0), beta, local)
    g_syn = tl.fma(tl.load(gsyn_ptr + offs, mask=mask, other=0.0), alpha, g_mem)
    tl.store(gmemstate_ptr + offs, g_mem, mask=mask)
    tl.store(gsyn_ptr + offs, g_syn, mask=mask)
    tl.store(gcur_ptr + offs, g_syn.to(gcur_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _recurrent_input(prev_ptr, v_ptr, rows, rmask, cols, cmask, N, rec, ACC: tl.constexpr, BK: tl.constexpr, PRECISION: tl.constexpr):
    """``rec + s V^T`` for the spikes ``s`` of rows ``rows`` at ``prev_ptr`` (``[B, N]``), k-blocked."""
    for k0 in range(0, N, BK):
        ks = k0 + tl.arange(0, BK)
        kmask = ks < N
        a = tl.load(prev_ptr + rows[:, None] * N + ks[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0)
        b = tl.load(v_ptr + cols[None, :] * N + ks[:, None], mask=kmask[:, None] & cmask[None, :], other=0.0)
        rec = tl.dot(a.to(ACC), b.to(ACC), rec, input_precision=PRECISION)
    return rec


@triton.jit
def _persistent_forward_kernel(
    cur_ptr, v_ptr, spk_ptr, mem_ptr, B, N, T, c_ptr, syn0_ptr, mem0_ptr, spk0_ptr, synT_ptr, memT_ptr,
    HAS_STATE: tl.constexpr, ACC: tl.constexpr, BB: tl.constexpr, NP: tl.constexpr, BK: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """All T steps of a REC layer; a program owns BB batch rows and all N (<= NP) neurons.

    With ``HAS_STATE`` it starts from the state ``*0`` (``spk0`` in the spikes' dtype) instead
    of zero and stores the final ``iota`` and ``u``.
    """
    alpha, beta, v_th, _, _ = _load_constants(c_ptr)
    rows = tl.program_id(0) * BB + tl.arange(0, BB)
    cols = tl.arange(0, NP)
    rmask = rows < B
    cmask = cols < N
    mask = rmask[:, None] & cmask[None, :]
    tile = rows[:, None] * N + cols[None, :]
    M = B * N
    if HAS_STATE:
        syn = tl.load(syn0_ptr + tile, mask=mask, other=0.0).to(ACC)
        mem = tl.load(mem0_ptr + tile, mask=mask, other=0.0).to(ACC)
        spk = tl.load(spk0_ptr + tile, mask=mask, other=0.0).to(ACC)
    else:
        syn = tl.zeros([BB, NP], dtype=ACC)
        mem = tl.zeros([BB, NP], dtype=ACC)
        spk = tl.zeros([BB, NP], dtype=ACC)
    cur_base = cur_ptr
    spk_base = spk_ptr
    mem_base = mem_ptr
    prev = spk0_ptr  # s^{t-1}: the given state's spikes, then those this program stored last step
    for t in range(T):
        x = tl.load(cur_base + tile, mask=mask, other=0.0).to(ACC)
        rec = tl.zeros([BB, NP], dtype=ACC)
        if HAS_STATE:
            rec = _recurrent_input(prev, v_ptr, rows, rmask, cols, cmask, N, rec, ACC, BK, PRECISION)
        elif t > 0:
            rec = _recurrent_input(prev, v_ptr, rows, rmask, cols, cmask, N, rec, ACC, BK, PRECISION)
        syn = tl.fma(syn, alpha, x) + rec
        mem = tl.fma(mem, beta, syn) - v_th * spk
        spk = (mem > v_th).to(ACC)
        tl.store(mem_base + tile, mem.to(mem_ptr.dtype.element_ty), mask=mask)
        tl.store(spk_base + tile, spk.to(spk_ptr.dtype.element_ty), mask=mask)
        tl.debug_barrier()  # this step's spikes are read by other threads of the program next step
        prev = spk_base
        cur_base += M
        spk_base += M
        mem_base += M
    if HAS_STATE:
        tl.store(synT_ptr + tile, syn, mask=mask)
        tl.store(memT_ptr + tile, mem, mask=mask)


@triton.jit
def _persistent_backward_kernel(
    gspk_ptr, gmem_ptr, mem_ptr, v_ptr, gsyn_ptr, gcur_ptr, B, N, T, last, c_ptr,
    SURROGATE: tl.constexpr, HAS_GSPK: tl.constexpr, HAS_GMEM: tl.constexpr,
    ACC: tl.constexpr, BB: tl.constexpr, NP: tl.constexpr, BK: tl.constexpr, PRECISION: tl.constexpr,
):
    """Backward of :func:`_persistent_forward_kernel`; ``gsyn_ptr`` is a [B, N] scratch in the state dtype."""
    alpha, beta, v_th, sg_a, sg_b = _load_constants(c_ptr)
    rows = tl.program_id(0) * BB + tl.arange(0, BB)
    cols = tl.arange(0, NP)
    rmask = rows < B
    cmask = cols < N
    mask = rmask[:, None] & cmask[None, :]
    tile = rows[:, None] * N + cols[None, :]
    M = B * N
    g_mem = tl.zeros([BB, NP], dtype=ACC)
    g_syn = tl.zeros([BB, NP], dtype=ACC)
    gspk_base = gspk_ptr + last
    gmem_base = gmem_ptr + last
    mem_base = mem_ptr + last
    gcur_base = gcur_ptr + last
    for step in range(T):
        g_spk = tl.zeros([BB, NP], dtype=ACC)
        if step > 0:
            # s^t feeds iota^{t+1} through V: g_iota^{t+1} V (k-blocked over the scratch copy).
            for k0 in range(0, N, BK):
                ks = k0 + tl.arange(0, BK)
                kmask = ks < N
                a = tl.load(gsyn_ptr + rows[:, None] * N + ks[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0)
                b = tl.load(v_ptr + ks[:, None] * N + cols[None, :], mask=kmask[:, None] & cmask[None, :], other=0.0)
                g_spk = tl.dot(a, b.to(ACC), g_spk, input_precision=PRECISION)
        if HAS_GSPK:
            g_spk = tl.load(gspk_base + tile, mask=mask, other=0.0).to(ACC) + g_spk
        u = tl.load(mem_base + tile, mask=mask, other=0.0).to(ACC)
        local = g_spk * _surrogate(u - v_th, sg_a, sg_b, SURROGATE)
        if HAS_GMEM:
            local = tl.load(gmem_base + tile, mask=mask, other=0.0).to(ACC) + local
        g_mem = tl.fma(g_mem, beta, local)
        g_syn = tl.fma(g_syn, alpha, g_mem)
        tl.store(gcur_base + tile, g_syn.to(gcur_ptr.dtype.element_ty), mask=mask)
        tl.debug_barrier()  # every thread has read the old scratch before it is overwritten
        tl.store(gsyn_ptr + tile, g_syn, mask=mask)
        tl.debug_barrier()
        gspk_base -= M
        gmem_base -= M
        mem_base -= M
        gcur_base -= M


# --------------------------------------------------------------------------- launchers
#: Batch rows per program of the persistent kernels (``tl.dot`` needs at least 16).
PERSISTENT_ROWS = 16
_TRITON_DTYPES = {torch.float32: tl.float32, torch.float64: tl.float64}


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels keep their state in: float64 for float64 tensors, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _grid(elements: int):
    return (triton.cdiv(elements, BLOCK),)


def _check_device(tensor: Tensor) -> None:
    if tensor.device.type != "cuda" and not interpreting():
        raise ValueError(
            f"The Triton LIF kernels need CUDA tensors (got {tensor.device}); use backend 'scan' on CPU, "
            "or set TRITON_INTERPRET=1 before importing lightning_local to run them in Triton's interpreter."
        )


_CONSTANTS: dict = {}


def _constants(params: LIFParameters, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``[alpha, beta, V_th, a, b]`` on the device, cached (no host-to-device copy per call,
    so a warmed-up scan can be captured in a CUDA graph). Stored in the state dtype, as torch
    casts Python scalars to a tensor's dtype."""
    key = (params, dtype, device)
    if key not in _CONSTANTS:
        _, sg_a, sg_b = surrogate_constants(params)
        _CONSTANTS[key] = torch.tensor([params.alpha, params.beta, params.v_th, sg_a, sg_b], dtype=dtype, device=device)
    return _CONSTANTS[key]


def surrogate_derivative(x: Tensor, params: LIFParameters) -> Tensor:
    """The kernels' surrogate at ``x`` (to check it against :mod:`.surrogate`)."""
    _check_device(x)
    x = x.contiguous()
    out = torch.empty_like(x)
    kind = SURROGATE_IDS[params.surrogate]
    _surrogate_kernel[_grid(x.numel())](x, out, x.numel(), _constants(params, x.dtype, x.device), SURROGATE=kind, BLOCK=BLOCK)
    return out


def _persistent_config(neurons: int, acc: torch.dtype) -> dict:
    padded = max(16, triton.next_power_of_2(neurons))
    tf32 = acc == torch.float32 and torch.get_float32_matmul_precision() != "highest"
    return dict(
        ACC=_TRITON_DTYPES[acc], BB=PERSISTENT_ROWS, NP=padded, BK=min(32, padded),
        PRECISION="tf32" if tf32 else "ieee", num_warps=4 if padded <= 128 else 8,
    )


def choose_rec_impl(neurons: int, requested: str = "auto") -> str:
    """``persistent`` for hidden sizes up to :data:`PERSISTENT_MAX_NEURONS`, else ``step``."""
    if requested == "auto":
        return "persistent" if neurons <= PERSISTENT_MAX_NEURONS else "step"
    if requested not in REC_IMPLEMENTATIONS:
        raise ValueError(f"Unknown recurrent implementation {requested!r}: choose one of {REC_IMPLEMENTATIONS} or 'auto'.")
    if requested == "persistent" and neurons > PERSISTENT_MAX_NEURONS:
        raise ValueError(f"The persistent REC kernel takes at most {PERSISTENT_MAX_NEURONS} neurons (got {neurons}); use 'step'.")
    return requested


def triton_lif_sequence(currents: Tensor, params: LIFParameters, recurrent_weight: Optional[Tensor] = None, rec_impl: str = "auto"):
    """``lif_sequence`` on the Triton kernels (``rec_impl``: ``auto``, ``step`` or ``persistent``)."""
    impl = choose_rec_impl(currents.shape[-1], rec_impl) if recurrent_weight is not None else "ff"
    return TritonLIFScan.apply(currents, recurrent_weight, params, impl)


@torch.no_grad()
def triton_lif_sequence_from(
    currents: Tensor, state: LIFState, params: LIFParameters, recurrent_weight: Optional[Tensor] = None, rec_impl: str = "auto"
) -> tuple[Tensor, Tensor, LIFState]:
    """``lif_sequence_from`` on the Triton kernels: the scan from ``state`` (each ``[B, N]``), forward only.

    Returns spikes and membranes ``[T, B, N]`` and the state after the last step (``iota`` and
    ``u`` in the kernels' state dtype, so a sequence split in pieces gives the unsplit values).
    """
    impl = choose_rec_impl(currents.shape[-1], rec_impl) if recurrent_weight is not None else "ff"
    spikes, mems, carried = _launch_forward(currents, recurrent_weight, params, impl, state)
    return spikes, mems, LIFState(carried[0], carried[1], spikes[-1])


def _launch_forward(currents: Tensor, recurrent_weight: Optional[Tensor], params: LIFParameters, impl: str,
                  state: Optional[LIFState] = None) -> tuple[Tensor, Tensor, Optional[tuple[Tensor, Tensor]]]:
    """Launch the forward kernels (``impl``: ``ff``, ``persistent`` or ``step``) from ``state`` (None: zero).

    Returns spikes, membranes and, with a state, the final ``(iota, u)`` in the state dtype.
    """
    _check_device(currents)
    currents = currents.contiguous()
    steps, batch, neurons = currents.shape
    acc = state_dtype(currents.dtype)
    consts = _constants(params, acc, currents.device)
    spikes = torch.empty_like(currents)
    mems = torch.empty_like(currents)
    elements = batch * neurons
    if state is None:
        given = (currents, currents, currents, currents, currents)  # never read: HAS_STATE is off
    else:
        final = (torch.empty(batch, neurons, dtype=acc, device=currents.device), torch.empty(batch, neurons, dtype=acc, device=currents.device))
        given = (state.syn.to(acc).contiguous(), state.mem.to(acc).contiguous(), state.spk.to(currents.dtype).contiguous(), *final)
    if impl == "ff":
        _ff_forward_kernel[_grid(elements)](
            currents, spikes, mems, elements, steps, consts, *given, HAS_STATE=state is not None,
            ACC=_TRITON_DTYPES[acc], BLOCK=BLOCK,
        )
    elif impl == "persistent":
        weight = recurrent_weight.detach().to(acc).contiguous()
        _persistent_forward_kernel[(triton.cdiv(batch, PERSISTENT_ROWS),)](
            currents, weight, spikes, mems, batch, neurons, steps, consts, *given, HAS_STATE=state is not None,
            **_persistent_config(neurons, acc),
        )
    else:
        carried = _step_forward(currents, recurrent_weight.detach().to(acc), consts, spikes, mems, state)
        return spikes, mems, carried if state is not None else None
    return spikes, mems, given[3:] if state is not None else None


class TritonLIFScan(torch.autograd.Function):
    """The LIF scan on Triton kernels; same inputs, outputs and gradients as ``lif._LIFScan``.

    Saves only the outputs (membrane; spikes for REC) and recomputes the surrogate backward.
    """

    @staticmethod
    def forward(ctx, currents: Tensor, recurrent_weight: Optional[Tensor], params: LIFParameters, rec_impl: str):  # type: ignore[override]
        spikes, mems, _ = _launch_forward(currents, recurrent_weight, params, "ff" if recurrent_weight is None else rec_impl)
        ctx.save_for_backward(mems, spikes if recurrent_weight is not None else None, recurrent_weight)
        ctx.params, ctx.rec_impl = params, rec_impl
        return spikes, mems

    @staticmethod
    def backward(ctx, grad_spikes: Optional[Tensor], grad_mems: Optional[Tensor]):  # type: ignore[override]
        mems, spikes, recurrent_weight = ctx.saved_tensors
        params: LIFParameters = ctx.params
        steps, batch, neurons = mems.shape
        elements = batch * neurons
        acc = state_dtype(mems.dtype)
        consts = _constants(params, acc, mems.device)
        flags = dict(SURROGATE=SURROGATE_IDS[params.surrogate], HAS_GSPK=grad_spikes is not None, HAS_GMEM=grad_mems is not None)
        # A missing gradient is zero: the kernel skips it (the placeholder pointer is never read).
        grad_spikes = grad_spikes.contiguous() if grad_spikes is not None else mems
        grad_mems = grad_mems.contiguous() if grad_mems is not None else mems
        grad_currents = torch.empty_like(mems)
        if recurrent_weight is None:
            _ff_backward_kernel[_grid(elements)](
                grad_spikes, grad_mems, mems, grad_currents, elements, steps, (steps - 1) * elements, consts,
                ACC=_TRITON_DTYPES[acc], BLOCK=BLOCK, **flags,
            )
            return grad_currents, None, None, None
        weight = recurrent_weight.detach().to(acc).contiguous()
        if ctx.rec_impl == "persistent":
            scratch = mems.new_zeros(batch, neurons, dtype=acc)
            _persistent_backward_kernel[(triton.cdiv(batch, PERSISTENT_ROWS),)](
                grad_spikes, grad_mems, mems, weight, scratch, grad_currents, batch, neurons, steps,
                (steps - 1) * elements, consts, **flags, **_persistent_config(neurons, acc),
            )
        else:
            _step_backward(grad_spikes, grad_mems, mems, weight, consts, grad_currents, flags)
        grad_recurrent = recurrent_weight_grad(grad_currents, spikes) if ctx.needs_input_grad[1] else None
        return grad_currents, grad_recurrent, None, None


def _step_forward(currents: Tensor, weight: Tensor, consts: Tensor, spikes: Tensor, mems: Tensor,
                  state: Optional[LIFState] = None) -> tuple[Tensor, Tensor]:
    """REC forward as per-step cuBLAS ``s^{t-1} V^T`` + fused element-wise kernel (no allocation in the loop).

    Starts from ``state`` (None: zero); returns the final ``(iota, u)`` in the state dtype.
    """
    steps, batch, neurons = currents.shape
    elements = batch * neurons
    syn = torch.zeros(batch, neurons, dtype=weight.dtype, device=currents.device)
    mem, rec = torch.zeros_like(syn), torch.zeros_like(syn)
    prev = torch.zeros_like(syn)  # s^{t-1} in the state dtype, the matmul's input
    if state is not None:
        syn.copy_(state.syn)
        mem.copy_(state.mem)
        prev.copy_(state.spk)
    rec_t = weight.t()
    for t in range(steps):
        if t > 0 or state is not None:
            torch.mm(prev, rec_t, out=rec)  # TF32 only if torch's float32 matmul precision allows it
        _rec_step_forward_kernel[_grid(elements)](
            currents[t], rec, prev, syn, mem, spikes[t], mems[t], elements, consts, ACC=_TRITON_DTYPES[weight.dtype], BLOCK=BLOCK
        )
        prev.copy_(spikes[t])
    return syn, mem


def _step_backward(grad_spikes: Tensor, grad_mems: Tensor, mems: Tensor, weight: Tensor, consts: Tensor, grad_currents: Tensor, flags: dict) -> None:
    """REC backward as per-step cuBLAS ``g_iota^{t+1} V`` + fused element-wise kernel."""
    steps, batch, neurons = mems.shape
    elements = batch * neurons
    g_mem = torch.zeros(batch, neurons, dtype=weight.dtype, device=mems.device)
    g_syn, rec = torch.zeros_like(g_mem), torch.zeros_like(g_mem)
    for t in range(steps - 1, -1, -1):
        if t < steps - 1:
            torch.mm(g_syn, weight, out=rec)  # s^t feeds iota^{t+1} through V
        _rec_step_backward_kernel[_grid(elements)](
            grad_spikes[t], rec, grad_mems[t], mems[t], g_mem, g_syn, grad_currents[t], elements, consts,
            ACC=_TRITON_DTYPES[weight.dtype], BLOCK=BLOCK, **flags,
        )
