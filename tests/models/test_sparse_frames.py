"""Sparse input frames: the CSR batch, its projection, and every learner fed with it.

References: the dense frames and autograd's gradient of ``X W^T``; the same network and
learner run on the dense batch.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_local.learners.registry import LEARNER_GROUP, available, learner_class_path
from lightning_local.models import SpikingNetwork, per_step_cross_entropy
from lightning_local.module import SpikingClassifier
from lightning_local.sparse_frames import SparseFrames


def binary_frames(batch=6, steps=9, features=13, density=0.25, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    frames = (torch.rand(batch, steps, features, generator=generator) < density).to(dtype)
    frames[0] = 0  # an empty first sample and an empty middle one: the index bookkeeping's edge cases
    frames[3] = 0
    return frames


def test_round_trip_and_both_index_sets_hold_the_frames():
    frames = binary_frames()
    sparse = SparseFrames.from_dense(frames)
    assert sparse.shape == frames.shape and sparse.nnz == int(frames.sum())
    assert torch.equal(sparse.to_dense(torch.float64), frames)
    # X^T's indices: row pointers per column, X's rows ascending within each column.
    x = frames.reshape(-1, frames.shape[2])
    pointers, rows = sparse.column_pointers.long(), sparse.column_rows.long()
    for f in range(x.shape[1]):
        expected = torch.nonzero(x[:, f]).flatten()
        assert torch.equal(rows[pointers[f]:pointers[f + 1]], expected)


def test_from_sample_indices_equals_from_dense():
    frames = binary_frames(dtype=torch.float32)
    samples = [np.flatnonzero(sample) for sample in frames.numpy()]
    built = SparseFrames.from_sample_indices(samples, frames.shape[1], frames.shape[2])
    dense = SparseFrames.from_dense(frames)
    for a, b in zip(built._indices(), dense._indices()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "samples, message",
    [
        ([np.array([0, 5]), np.array([3, 117])], "must lie in"),
        ([np.array([4, 2])], "sorted"),
        ([np.array([2, 2])], "sorted"),
        ([np.array([-1])], "must lie in"),
    ],
)
def test_bad_sample_indices_are_refused(samples, message):
    with pytest.raises(ValueError, match=message):
        SparseFrames.from_sample_indices(samples, steps=9, features=13)


def test_samples_may_restart_lower_than_the_previous_one_ended():
    built = SparseFrames.from_sample_indices([np.array([100]), np.array([], dtype=np.int64), np.array([1, 2])], 9, 13)
    assert built.nnz == 3


def test_non_binary_frames_are_refused():
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        SparseFrames.from_dense(torch.full((1, 2, 3), 2.0))


def test_projection_and_weight_gradient_equal_autograd():
    frames = binary_frames()
    weight = torch.randn(5, frames.shape[2], dtype=torch.float64, requires_grad=True)
    reference = weight.detach().clone().requires_grad_()
    out = SparseFrames.from_dense(frames).project(weight)
    expected = frames @ reference.t()
    grad = torch.randn_like(expected)
    out.backward(grad)
    expected.backward(grad)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(weight.grad, reference.grad, rtol=0, atol=1e-12)


def test_projection_under_bfloat16_autocast_runs_in_float32():
    """The CSR kernels have no bfloat16: under autocast the projection keeps the weight's float32."""
    frames = binary_frames(dtype=torch.float32)
    weight = torch.randn(5, frames.shape[2], requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = SparseFrames.from_dense(frames).project(weight)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, frames @ weight.detach().t(), rtol=1e-6, atol=1e-6)
    out.sum().backward()
    torch.testing.assert_close(weight.grad, frames.reshape(-1, frames.shape[2]).sum(0).expand_as(weight))


def test_moving_keeps_the_frames():
    sparse = SparseFrames.from_dense(binary_frames())
    moved = sparse.to("cpu")
    assert torch.equal(moved.to_dense(), sparse.to_dense())
    assert sparse.detach() is sparse


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_network_on_sparse_frames_equals_dense_forward_and_gradient(architecture):
    frames = binary_frames(batch=5, steps=20, features=30, density=0.3)
    labels = torch.tensor([0, 1, 2, 3, 1])
    torch.manual_seed(0)
    network = SpikingNetwork(30, [16, 8], 4, architecture).double()
    with torch.no_grad():
        for layer in network.layers:
            layer.synapse.weight.mul_(4.0)  # so that every layer fires on these frames

    def run(x):
        output = network(x)
        loss = per_step_cross_entropy(output.output_membrane, labels)
        return output, torch.autograd.grad(loss, list(network.parameters()))

    dense_out, dense_grads = run(frames)
    sparse_out, sparse_grads = run(SparseFrames.from_dense(frames))
    for spikes in dense_out.spikes[:-1]:
        assert 0.01 < spikes.mean() < 0.9  # the layers fire: the comparison is not vacuous
    for a, b in zip(dense_out.spikes, sparse_out.spikes):
        assert torch.equal(a, b)
    for a, b in zip(dense_grads, sparse_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_convolutional_network_refuses_sparse_frames():
    network = SpikingNetwork.convolutional((2, 6, 6), [3], 4, "ff", kernel_size=3)
    frames = SparseFrames.from_dense(torch.zeros(2, 3, 72))
    with pytest.raises(TypeError, match="fully connected first layer"):
        network(frames)


# ---------------------------------------------------------------- every learner through Lightning
STEPS, INPUTS, CLASSES = 10, 24, 3
LEARNERS = {name: name for name in sorted(available(LEARNER_GROUP))}
LEARNERS["dfa"] = {"class_path": learner_class_path("fa"), "init_args": {"direct": True}}


def sparse_collate(items):
    frames = torch.stack([frames for frames, _ in items])
    return SparseFrames.from_dense(frames), torch.stack([label for _, label in items])


def fitted_weights(learner, sparse: bool, tmp_path) -> tuple[SpikingClassifier, list[torch.Tensor]]:
    """The module and its initial weights after two epochs on 16 class-dependent spike trains."""
    generator = torch.Generator().manual_seed(3)
    labels = torch.randint(0, CLASSES, (16,), generator=generator)
    rates = 0.1 + 0.4 * (torch.arange(INPUTS) % CLASSES == labels[:, None]).float()
    frames = (torch.rand(16, STEPS, INPUTS, generator=generator) < rates[:, None, :]).float()
    data = DataLoader(TensorDataset(frames, labels), batch_size=8, collate_fn=sparse_collate if sparse else None)
    torch.manual_seed(0)
    module = SpikingClassifier(INPUTS, CLASSES, learner=learner, hidden_sizes=[12], lr=1e-2)
    initial = [p.detach().clone() for p in module.network.parameters()]
    pl.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
               enable_checkpointing=False, default_root_dir=tmp_path).fit(module, data)
    return module, initial


@pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")
@pytest.mark.parametrize("key", list(LEARNERS))
def test_every_learner_trains_the_same_on_sparse_batches(key, tmp_path):
    """Rules that take sparse frames match the dense run up to float32 rounding; the others get dense frames: exactly."""
    dense, initial = fitted_weights(LEARNERS[key], sparse=False, tmp_path=tmp_path)
    sparse, _ = fitted_weights(LEARNERS[key], sparse=True, tmp_path=tmp_path)
    assert not torch.equal(dense.network.layers[0].synapse.weight, initial[0])  # the input projection trained
    exact = not dense.learner.sparse_input
    for a, b in zip(dense.network.parameters(), sparse.network.parameters()):
        torch.testing.assert_close(a, b, rtol=0 if exact else 1e-5, atol=0 if exact else 1e-6)
