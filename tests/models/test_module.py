"""The LightningModule's input checks and learner wiring."""

import pytest
import torch

from lightning_local.learners import UnknownNameError
from lightning_local.module import InvalidInputError, SpikingClassifier


def test_bad_batches_are_rejected_with_a_clear_error():
    model = SpikingClassifier(num_inputs=8, num_classes=3, hidden_sizes=[5])
    labels = torch.zeros(2, dtype=torch.long)
    with pytest.raises(InvalidInputError, match=r"\[batch, time, 8\]"):
        model.training_step((torch.zeros(2, 4, 9), labels), 0)
    with pytest.raises(InvalidInputError, match="NaN"):
        frames = torch.zeros(2, 4, 8)
        frames[1, 2, 3] = float("nan")
        model.training_step((frames, labels), 0)


def test_learner_spec_rebuilds_from_checkpoint_hparams():
    model = SpikingClassifier(num_inputs=8, num_classes=3, learner="bptt", architecture="rec", hidden_sizes=[5])
    assert model.hparams["learner"] == {"class_path": "lightning_local.plugins.bptt.BPTT", "init_args": {}}
    clone = SpikingClassifier(**model.hparams)
    assert type(clone.learner) is type(model.learner) and clone.network.architecture == "rec"
    with pytest.raises(UnknownNameError, match="available learners"):
        SpikingClassifier(num_inputs=8, num_classes=3, learner="nope")


def test_decay_factors_and_time_constants_are_interchangeable():
    from_tau = SpikingClassifier(num_inputs=8, num_classes=3, hidden_sizes=[5], tau_syn=4.0, tau_mem=8.0)
    from_decay = SpikingClassifier(num_inputs=8, num_classes=3, hidden_sizes=[5], alpha=0.7788007830714049, beta=0.8824969025845955)
    assert from_tau.network.params == from_decay.network.params
    default = SpikingClassifier(num_inputs=8, num_classes=3, hidden_sizes=[5]).network.params
    assert (default.alpha, default.beta) == pytest.approx((0.8187307530779818, 0.9048374180359595))  # tau 5 / 10
    # Table VII's DVS Gesture DECOLLE REC uses a = 0.05: a decay that short is valid.
    fast = SpikingClassifier(num_inputs=8, num_classes=3, hidden_sizes=[5], alpha=0.05, beta=0.2).network.params
    assert (fast.alpha, fast.beta) == (0.05, 0.2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": 0.9, "tau_syn": 5.0}, "either alpha or tau_syn"),
        ({"beta": 1.5}, r"beta must lie in \[0, 1\]"),
        ({"tau_mem": -2.0}, "tau_mem must be positive"),
        ({"v_th": 0.0}, "v_th must be positive"),
        ({"hidden_sizes": [0]}, "positive integers"),
        ({"hidden_sizes": [-3, 4]}, "positive integers"),
        ({"lr": -1.0}, "lr must be positive"),
        ({"weight_decay": -0.1}, "weight_decay"),
    ],
)
def test_bad_model_arguments_are_user_errors(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        SpikingClassifier(num_inputs=8, num_classes=3, **{"hidden_sizes": [5], **kwargs})


@pytest.mark.parametrize("decays", [{"tau_syn": 5.0, "tau_mem": 10.0}, {"alpha": 0.99, "beta": 0.95}])
def test_default_output_init_does_not_start_saturated(decays):
    # Sparse binary input like N-MNIST frames (a few % of 2,312 pixels active per step).
    torch.manual_seed(0)
    frames = (torch.rand(32, 50, 2312) < 0.05).float()
    labels = torch.randint(0, 10, (32,))

    def initial(output_init_gain):
        torch.manual_seed(1)
        model = SpikingClassifier(num_inputs=2312, num_classes=10, output_init_gain=output_init_gain, **decays)
        with torch.no_grad():
            out = model.network(frames)
        return out.output_membrane.std().item(), torch.nn.functional.cross_entropy(
            out.output_membrane.reshape(-1, 10), labels.repeat(50)
        ).item()

    std, loss = initial(5.0)
    plain_std, plain_loss = initial(None)
    # nn.Linear's scale saturates the integrating output neuron; the default keeps logits O(1)
    # and the initial loss near chance (ln 10 = 2.30).
    assert plain_std > 2.0 and plain_loss > 3.5
    assert std < 1.0 and loss < 2.6


def test_the_optimizer_is_fused_adam_and_steps_like_the_reference_adam():
    torch.manual_seed(0)
    model = SpikingClassifier(12, 3, hidden_sizes=[8], lr=1e-2, weight_decay=1e-3)
    fused = model.configure_optimizers()
    assert fused.defaults["fused"] is True
    start = [p.detach().clone() for p in model.parameters()]
    twin = [p.detach().clone().requires_grad_() for p in model.parameters()]
    reference = torch.optim.Adam(twin, lr=1e-2, weight_decay=1e-3, foreach=False)
    for step in range(5):
        grads = [torch.randn_like(p) for p in twin]
        for p, q, g in zip(model.parameters(), twin, grads):
            p.grad, q.grad = g.clone(), g.clone()
        fused.step()
        reference.step()
    for p, q, p0 in zip(model.parameters(), twin, start):
        assert (p - p0).abs().max() > 1e-2  # five steps of lr 1e-2 moved every weight
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
