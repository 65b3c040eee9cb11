"""``lif_sequence_from``: a sequence cut into blocks, the state carried across, equals the whole.

Every backend (the fused scan, the reference, each Triton kernel in the interpreter or on
CUDA) against the fused scan of the unsplit sequence.
"""

from __future__ import annotations

import pytest
import torch
from test_triton_lif import BATCH, NEURONS, STEPS, inputs, params_for

from lightning_local.neurons import LIFState, lif_sequence, lif_sequence_from

BACKENDS = {"ff": ["scan", "reference", "triton"], "rec": ["scan", "reference", "triton_step", "triton_persistent"]}
CASES = [(arch, backend) for arch, backends in BACKENDS.items() for backend in backends]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("arch, backend", CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_blocks_with_carried_state_equal_the_whole_sequence(arch, backend, dtype, device):
    params = params_for("fast_sigmoid")
    currents, weight, _ = inputs(arch, dtype, device)
    with torch.no_grad():
        whole_spikes, whole_mems = lif_sequence(currents, params, weight, backend="scan")
    assert whole_spikes.sum() > 0.05 * whole_spikes.numel()  # the neurons fire: the carry matters
    state = LIFState.zeros(BATCH, NEURONS, currents)
    spikes, mems = [], []
    for start, stop in ((0, 5), (5, 6), (6, STEPS)):  # uneven blocks, one of a single step
        block_spikes, block_mems, state = lif_sequence_from(currents[start:stop], state, params, weight, backend=backend)
        spikes.append(block_spikes)
        mems.append(block_mems)
    torch.testing.assert_close(torch.cat(spikes), whole_spikes, rtol=0, atol=0)
    tolerance = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(torch.cat(mems), whole_mems, rtol=0, atol=tolerance * whole_mems.abs().max().item())
    assert torch.equal(state.spk, whole_spikes[-1])
    torch.testing.assert_close(state.mem.to(dtype), whole_mems[-1], rtol=0, atol=tolerance * whole_mems.abs().max().item())


@pytest.mark.parametrize("arch", ["ff", "rec"])
def test_the_carried_synaptic_current_is_the_recursions(arch, device):
    """The final iota (not an output of the scan) is what eq. 1 gives: checked one step on."""
    params = params_for("atan")
    currents, weight, _ = inputs(arch, torch.float64, device)
    zero = LIFState.zeros(BATCH, NEURONS, currents)
    _, _, scan_state = lif_sequence_from(currents, zero, params, weight, backend="scan")
    kernel = "triton" if arch == "ff" else "triton_persistent"
    _, _, kernel_state = lif_sequence_from(currents, zero, params, weight, backend=kernel)
    torch.testing.assert_close(kernel_state.syn, scan_state.syn, rtol=0, atol=1e-12)
    assert scan_state.syn.abs().max() > 0.1


def test_no_graph_is_recorded(device):
    currents, _, _ = inputs("ff", torch.float32, device)
    currents.requires_grad_()
    spikes, mems, state = lif_sequence_from(currents, LIFState.zeros(BATCH, NEURONS, currents), params_for("atan"))
    assert not spikes.requires_grad and not mems.requires_grad and not state.syn.requires_grad
