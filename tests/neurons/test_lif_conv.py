"""Eq. 1 on convolutional layers: the fused scan with a recurrent convolution equals the autograd reference."""

import pytest
import torch

from lightning_local.neurons import LIFParameters, lif_sequence
from lightning_local.synapses import ConvSynapse, LinearSynapse

STEPS, BATCH, SHAPE = 25, 3, (3, 7, 6)  # odd, non-square spike maps

pytestmark = pytest.mark.usefixtures("float64", "single_thread")


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def run(backend, currents, recurrent, probes):
    """Spikes, membranes and the gradients of ``<probe_s, s> + <probe_u, u>`` w.r.t. the currents and ``V``."""
    x = currents.clone().requires_grad_()
    spikes, mems = lif_sequence(x, PARAMS, recurrent, backend=backend)
    objective = (spikes * probes[0]).sum() + (mems * probes[1]).sum()
    leaves = [x] + ([recurrent.weight] if recurrent is not None else [])
    return spikes.detach(), mems.detach(), torch.autograd.grad(objective, leaves)


PARAMS = LIFParameters.from_time_constants(4.0, 8.0)


@pytest.mark.parametrize("recurrent_kernel", [None, 3, 5], ids=["ff", "rec_k3", "rec_k5"])
def test_scan_equals_reference_on_conv_shaped_currents(recurrent_kernel):
    currents = randn(STEPS, BATCH, *SHAPE, seed=0) * 0.9
    probes = randn(STEPS, BATCH, *SHAPE, seed=1), randn(STEPS, BATCH, *SHAPE, seed=2)
    recurrent = None
    if recurrent_kernel is not None:
        torch.manual_seed(3)
        recurrent = ConvSynapse(SHAPE, SHAPE[0], recurrent_kernel, padding=recurrent_kernel // 2)  # "same"
        with torch.no_grad():
            recurrent.weight.mul_(2.0)
    spikes, mems, grads = run("scan", currents, recurrent, probes)
    ref_spikes, ref_mems, ref_grads = run("reference", currents, recurrent, probes)
    assert spikes.shape == mems.shape == currents.shape
    assert 0.05 < spikes.mean() < 0.6, f"spike share {spikes.mean():.3f}: the comparison would be vacuous"
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(mems, ref_mems, rtol=0, atol=1e-10)
    for ours, reference in zip(grads, ref_grads):
        assert reference.abs().max() > 1e-3
        torch.testing.assert_close(ours, reference, rtol=0, atol=1e-10)
    if recurrent is not None:
        # The recurrent convolution matters: without it the spikes differ.
        alone, _, _ = run("scan", currents, None, probes)
        assert not torch.equal(alone, spikes)


def test_conv_shaped_sequence_is_the_flat_one_without_recurrence():
    """Without a recurrent synapse the neurons are independent: their shape is only a layout."""
    currents = randn(STEPS, BATCH, *SHAPE, seed=4)
    spikes, mems = lif_sequence(currents, PARAMS, backend="scan")
    flat_spikes, flat_mems = lif_sequence(currents.flatten(2), PARAMS, backend="scan")
    assert torch.equal(spikes.flatten(2), flat_spikes)
    torch.testing.assert_close(mems.flatten(2), flat_mems, rtol=0, atol=0)


def test_a_recurrent_synapse_that_does_not_map_the_neurons_onto_themselves_is_refused():
    with pytest.raises(ValueError, match="onto themselves"):
        lif_sequence(torch.zeros(3, 2, 5), LIFParameters(), LinearSynapse(4, 4))
