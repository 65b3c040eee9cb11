"""The LIF neuron against snnTorch's Synaptic/RSynaptic neurons and against autograd."""

import pytest
import snntorch as snn
import torch
from snntorch import surrogate as snn_surrogate

from lightning_local.neurons import LIFParameters, LIFState, lif_sequence, lif_step, spike

STEPS, BATCH, NEURONS = 60, 5, 9
SNN_SURROGATES = {"fast_sigmoid": lambda s: snn_surrogate.fast_sigmoid(slope=s), "atan": lambda s: snn_surrogate.atan(alpha=s)}


pytestmark = pytest.mark.usefixtures("float64")


def random_currents(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(STEPS, BATCH, NEURONS, generator=generator) * 0.9


class CastingLinear(torch.nn.Module):
    """snnTorch emits float32 spikes; cast them so the float64 reference stays float64."""

    def __init__(self, weight):
        super().__init__()
        self.weight = weight  # a plain tensor, so gradients reach the caller's leaf

    def forward(self, spikes):
        return spikes.to(self.weight.dtype) @ self.weight.t()


def snntorch_reference(currents, params, recurrent_weight=None):
    """Run snnTorch's (R)Synaptic neuron step by step; returns spikes and membranes."""
    common = dict(alpha=params.alpha, beta=params.beta, threshold=params.v_th, reset_mechanism="subtract",
                  spike_grad=SNN_SURROGATES[params.surrogate](params.surrogate_scale))
    spikes, mems = [], []
    if recurrent_weight is None:
        neuron = snn.Synaptic(**common)
        syn, mem = neuron.init_synaptic()
        for current in currents:
            spk, syn, mem = neuron(current, syn, mem)
            spikes.append(spk)
            mems.append(mem)
    else:
        neuron = snn.RSynaptic(**common, all_to_all=True, linear_features=NEURONS)
        neuron.recurrent = CastingLinear(recurrent_weight)
        spk, syn, mem = neuron.init_rsynaptic()
        for current in currents:
            spk, syn, mem = neuron(current, spk, syn, mem)
            spikes.append(spk)
            mems.append(mem)
    return torch.stack(spikes).to(currents.dtype), torch.stack(mems)


@pytest.mark.parametrize("recurrent", [False, True], ids=["ff", "rec"])
@pytest.mark.parametrize("surrogate", ["fast_sigmoid", "atan"])
def test_scan_matches_snntorch_step_by_step(recurrent, surrogate):
    params = LIFParameters.from_time_constants(4.0, 8.0, v_th=1.0, surrogate=surrogate, surrogate_scale=25.0 if surrogate == "fast_sigmoid" else 2.0)
    currents = random_currents()
    weight = torch.randn(NEURONS, NEURONS, generator=torch.Generator().manual_seed(1)) * 0.4 if recurrent else None
    ref_spikes, ref_mems = snntorch_reference(currents, params, weight)
    spikes, mems = lif_sequence(currents, params, weight)
    assert ref_spikes.sum() > 20, "the test input must make the neurons fire"
    torch.testing.assert_close(spikes, ref_spikes, rtol=0, atol=1e-6)
    torch.testing.assert_close(mems, ref_mems, rtol=0, atol=1e-6)
    # the per-step API is the same neuron
    state = LIFState.zeros(BATCH, NEURONS, currents)
    for t, current in enumerate(currents):
        state = lif_step(current, state, params, weight)
        torch.testing.assert_close(state.mem, ref_mems[t], rtol=0, atol=1e-6)
        torch.testing.assert_close(state.spk, ref_spikes[t], rtol=0, atol=0)


@pytest.mark.parametrize("recurrent", [False, True], ids=["ff", "rec"])
@pytest.mark.parametrize("surrogate", ["fast_sigmoid", "atan"])
def test_scan_backward_equals_autograd_through_snntorch(recurrent, surrogate):
    params = LIFParameters.from_time_constants(4.0, 8.0, surrogate=surrogate, surrogate_scale=25.0 if surrogate == "fast_sigmoid" else 2.0)
    currents = random_currents(2)
    weight = torch.randn(NEURONS, NEURONS, generator=torch.Generator().manual_seed(3)) * 0.4 if recurrent else None
    probe_spk = torch.randn(STEPS, BATCH, NEURONS, generator=torch.Generator().manual_seed(4))
    probe_mem = torch.randn(STEPS, BATCH, NEURONS, generator=torch.Generator().manual_seed(5))

    def grads(run):
        x = currents.clone().requires_grad_()
        w = weight.clone().requires_grad_() if recurrent else None
        spikes, mems = run(x, w)
        ((spikes * probe_spk).sum() + (mems * probe_mem).sum()).backward()
        return [x.grad] + ([w.grad] if recurrent else [])

    ours = grads(lambda x, w: lif_sequence(x, params, w))
    reference = grads(lambda x, w: snntorch_reference(x, params, w))
    assert ours[0].abs().max() > 1.0
    # snnTorch keeps alpha/beta as float32 tensors, hence 1e-6 rather than float64 exactness.
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_spike_surrogate_derivative_matches_snntorch():
    x = torch.linspace(-1, 1, 101, requires_grad=True)
    spike(x, "fast_sigmoid", 25.0).sum().backward()
    ours = x.grad.clone()
    x.grad = None
    snn_surrogate.fast_sigmoid(slope=25.0)(x).sum().backward()
    torch.testing.assert_close(ours, x.grad)


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="Unknown surrogate"):
        LIFParameters(surrogate="sigmoidish")
    with pytest.raises(ValueError, match="positive"):
        LIFParameters.from_time_constants(5.0, 0)
    with pytest.raises(ValueError, match=r"\[T, batch, \*neurons\]"):
        lif_sequence(torch.zeros(3, 4), LIFParameters())
