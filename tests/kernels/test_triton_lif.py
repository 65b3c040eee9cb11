"""The Triton LIF kernels against the fused scan (and the step-by-step autograd reference).

Sizes are deliberately odd: batch x neurons is not a multiple of the element-wise
block (256), the neurons are not a multiple of the persistent kernel's 16/32 tiles,
and the batch is not a multiple of its 16 rows, so every masked edge is exercised.
"""

from __future__ import annotations

import pytest
import torch

from lightning_local.models import SpikingNetwork, per_step_cross_entropy
from lightning_local.neurons import LIFParameters, lif_sequence
from lightning_local.neurons import triton_lif
from lightning_local.neurons.backends import resolve_backend
from lightning_local.neurons.surrogate import get_surrogate

STEPS, BATCH, NEURONS = 12, 5, 53  # 265 elements: two element-wise blocks, a ragged k-tile
KERNELS = {"ff": ["triton"], "rec": ["triton_step", "triton_persistent"]}
SCALES = {"fast_sigmoid": 25.0, "atan": 2.0}
CASES = [(arch, backend, surrogate) for arch, backends in KERNELS.items() for backend in backends for surrogate in SCALES]
IDS = [f"{a}-{b}-{s}" for a, b, s in CASES]


def params_for(surrogate: str) -> LIFParameters:
    return LIFParameters.from_time_constants(4.0, 8.0, v_th=1.0, surrogate=surrogate, surrogate_scale=SCALES[surrogate])


def inputs(arch: str, dtype: torch.dtype, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    currents = torch.randn(STEPS, BATCH, NEURONS, generator=g, dtype=torch.float64) * 0.6 + 0.15
    weight = torch.randn(NEURONS, NEURONS, generator=g, dtype=torch.float64) * 0.1 if arch == "rec" else None
    probes = torch.randn(2, STEPS, BATCH, NEURONS, generator=g, dtype=torch.float64)
    move = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
    return move(currents), move(weight), move(probes)


def run(backend, params, currents, weight, probes, which=("spikes", "mems")):
    """Outputs and gradients (currents, recurrent weight) of a loss that weights the chosen outputs."""
    x = currents.clone().requires_grad_()
    w = weight.clone().requires_grad_() if weight is not None else None
    spikes, mems = lif_sequence(x, params, w, backend=backend)
    loss = sum((out * probe).sum() for name, out, probe in zip(("spikes", "mems"), (spikes, mems), probes) if name in which)
    loss.backward()
    return {"spikes": spikes.detach(), "mems": mems.detach(), "grad_currents": x.grad, "grad_recurrent": None if w is None else w.grad}


def assert_matches(ours: dict, ref: dict, relative: float) -> None:
    """Spikes identical; every other tensor within ``relative`` x its largest reference value."""
    assert ref["spikes"].sum() > 0.05 * ref["spikes"].numel(), "the test input must make the neurons fire"
    torch.testing.assert_close(ours["spikes"], ref["spikes"], rtol=0, atol=0)
    for name in ("mems", "grad_currents", "grad_recurrent"):
        if ref[name] is None:
            assert ours[name] is None, name
            continue
        scale = ref[name].abs().max().item()
        assert scale > 0.1, f"{name} must not be trivially zero"
        torch.testing.assert_close(ours[name], ref[name], rtol=0, atol=relative * scale, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("surrogate", list(SCALES))
def test_kernel_surrogate_is_the_surrogate_module(surrogate, device):
    x = torch.linspace(-2, 2, 301, dtype=torch.float64, device=device)
    params = params_for(surrogate)
    ours = triton_lif.surrogate_derivative(x, params)
    torch.testing.assert_close(ours, get_surrogate(surrogate)(x, params.surrogate_scale), rtol=1e-14, atol=0)


@pytest.mark.parametrize("arch,backend,surrogate", CASES, ids=IDS)
def test_float64_equals_scan(arch, backend, surrogate, device):
    """In float64 the kernels compute the scan's recursion: agreement to rounding."""
    params = params_for(surrogate)
    currents, weight, probes = inputs(arch, torch.float64, device)
    assert_matches(run(backend, params, currents, weight, probes), run("scan", params, currents, weight, probes), 1e-12)


@pytest.mark.parametrize("arch,backend,surrogate", CASES, ids=IDS)
def test_float32_matches_scan(arch, backend, surrogate, device):
    """float32: spikes identical to the scan's, membrane within 1e-6 of its scale.

    Gradients: the FF and per-step kernels do the scan's operations in the scan's order, so
    they agree with it to 1e-6 of the gradient's scale. The persistent kernel sums the
    recurrent matmul in another order (tl.dot vs BLAS); fast_sigmoid(25) turns the resulting
    1-ulp changes of u into 50x larger relative changes of its derivative. Float32 alone moves
    the scan's own gradients by up to 4e-6 of their scale from the exact (float64) values
    here, so the persistent kernel is held to the same band: within 1e-5 of the exact values.
    """
    params = params_for(surrogate)
    currents, weight, probes = inputs(arch, torch.float32, device, seed=1)
    ours, scan = run(backend, params, currents, weight, probes), run("scan", params, currents, weight, probes)
    if backend != "triton_persistent":
        assert_matches(ours, scan, 1e-6)
        return
    exact = run("scan", params, currents.double(), weight.double(), probes.double())
    assert_matches({**ours, "grad_currents": None, "grad_recurrent": None}, {**scan, "grad_currents": None, "grad_recurrent": None}, 1e-6)
    for name in ("grad_currents", "grad_recurrent"):
        scale = exact[name].abs().max().item()
        errors = [(result[name].double() - exact[name]).abs().max().item() / scale for result in (ours, scan)]
        assert errors[0] <= 1e-5, f"{name}: error {errors[0]:.1e} of scale (the scan's own: {errors[1]:.1e})"


@pytest.mark.parametrize("which", [("spikes",), ("mems",)], ids=["spikes-only", "membrane-only"])
@pytest.mark.parametrize("arch,backend", [("ff", "triton"), ("rec", "triton_step"), ("rec", "triton_persistent")])
def test_one_sided_gradients(arch, backend, which, device):
    """A loss on only one output: autograd hands the kernel ``None`` for the other."""
    params = params_for("fast_sigmoid")
    currents, weight, probes = inputs(arch, torch.float64, device, seed=2)
    ours = run(backend, params, currents, weight, probes, which)
    assert_matches(ours, run("scan", params, currents, weight, probes, which), 1e-12)


@pytest.mark.parametrize("arch", ["ff", "rec"])
def test_scan_equals_step_by_step_autograd(arch, device):
    """The 'reference' backend (lif_step under autograd) anchors scan and kernels alike."""
    params = params_for("atan")
    currents, weight, probes = inputs(arch, torch.float64, device, seed=3)
    assert_matches(run("reference", params, currents, weight, probes), run("scan", params, currents, weight, probes), 1e-12)


@pytest.mark.parametrize("arch,backend", [("ff", "triton"), ("rec", "triton_step"), ("rec", "triton_persistent")])
def test_bfloat16_io_keeps_float32_state(arch, backend, device):
    """bf16 currents: the kernels keep float32 state, so spikes equal the float32 scan of the same
    (bf16-representable) currents and the membrane is that scan's membrane rounded to bf16."""
    params = params_for("fast_sigmoid")
    currents, weight, probes = inputs(arch, torch.bfloat16, device, seed=4)
    weight = None if weight is None else weight.float()
    spikes, mems = lif_sequence(currents, params, weight, backend=backend)
    ref_spikes, ref_mems = lif_sequence(currents.float(), params, weight, backend="scan")
    assert spikes.dtype == mems.dtype == torch.bfloat16
    torch.testing.assert_close(spikes.float(), ref_spikes, rtol=0, atol=0)
    torch.testing.assert_close(mems, to_bfloat16_as_triton(ref_mems), rtol=0, atol=0)


def to_bfloat16_as_triton(x: torch.Tensor) -> torch.Tensor:
    """float32 -> bf16 as the kernels' store does it: round to nearest on a GPU; Triton's
    interpreter truncates (it drops the low 16 bits), so the expectation follows it there."""
    if not triton_lif.interpreting():
        return x.to(torch.bfloat16)
    return (x.view(torch.int32) & -65536).view(torch.float32).to(torch.bfloat16)


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_network_backend_switch_gives_the_same_training_step(architecture, device):
    """SpikingNetwork(backend=...): loss and every weight gradient agree across backends."""
    frames = (torch.rand(3, 9, 20, generator=torch.Generator().manual_seed(5), dtype=torch.float64) < 0.3).double().to(device)
    labels = torch.tensor([0, 2, 1], device=device)
    results = {}
    for backend in ("scan", "triton", "reference"):
        torch.manual_seed(0)
        net = SpikingNetwork(20, [17, 11], 3, architecture, backend=backend).to(device, torch.float64)
        out = net(frames)
        per_step_cross_entropy(out.output_membrane, labels).backward()
        results[backend] = (out, [p.grad for p in net.parameters()])
    ref_out, ref_grads = results["scan"]
    assert sum(s.sum() for s in ref_out.spikes[:-1]) > 20, "hidden layers must fire"
    for backend in ("triton", "reference"):
        out, grads = results[backend]
        for a, b in zip(out.spikes, ref_out.spikes):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(out.output_membrane, ref_out.output_membrane, rtol=1e-12, atol=1e-12)
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_backend_names_resolve(device):
    assert resolve_backend("auto", torch.device("cpu")) == "scan"
    assert resolve_backend("triton_step", device) == "triton_step"
    with pytest.raises(ValueError, match="Unknown LIF backend 'cuda'.*auto, scan, triton"):
        resolve_backend("cuda", device)
    with pytest.raises(ValueError, match="at most 512 neurons"):
        triton_lif.choose_rec_impl(513, "persistent")
    assert triton_lif.choose_rec_impl(513) == "step" and triton_lif.choose_rec_impl(512) == "persistent"
