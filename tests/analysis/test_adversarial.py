"""Attack models (trained ANN, ReLU ANN counterpart, smoothed SNN, SNN), FGSM through torchattacks, and the FGSM / CKA callbacks."""

import json

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from lightning_local.analysis import AdversarialCKA, CKAComparison, FGSMTransfer, SmoothedSNN, SNNLogits, fgsm
from lightning_local.analysis.adversarial import Attack, TrainedANN, attack_model
from lightning_local.models import SpikingNetwork
from lightning_local.module import SpikingClassifier
from lightning_local.models.ann import ANNCounterpart
from lightning_local.plugins.conversion import Conversion

from analysis_helpers import TinyEvents, tiny_model, tiny_trainer


def network_and_batch(architecture, seed=0):
    torch.manual_seed(seed)
    network = SpikingNetwork(30, [20, 12], 4, architecture)
    for layer in network.layers:
        layer.weight.data *= 3.0
    frames = (torch.rand(8, 25, 30) < 0.3).float()
    return network, frames, torch.randint(0, 4, (8,))


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_ann_counterpart_is_the_relu_net_on_the_mean_input(architecture):
    network, frames, _ = network_and_batch(architecture)
    w1, w2, w3 = (layer.weight.detach() for layer in network.layers)
    rates = frames.sum(dim=1) / frames.shape[1]
    expected = torch.clamp(torch.clamp(rates @ w1.T, min=0) @ w2.T, min=0) @ w3.T  # written out, V has no role
    ann = attack_model(network, "counterpart")
    assert isinstance(ann, ANNCounterpart)
    torch.testing.assert_close(ann(frames), expected)
    # the conversion learner trains exactly this ANN (one shared definition)
    torch.testing.assert_close(Conversion.ann_activations(network, rates)[-1], expected)
    assert {id(p) for p in ann.parameters()} == {id(p) for p in network.parameters()}  # shared, not copied


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_smoothed_snn_has_the_snn_weights_and_dynamics(architecture):
    network, frames, _ = network_and_batch(architecture)
    snn = network(frames).logits
    torch.testing.assert_close(SmoothedSNN(network, slope=1e7)(frames), snn, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(SmoothedSNN(network, slope=5.0)(frames), snn)
    assert {id(p) for p in SmoothedSNN(network).parameters()} == {id(p) for p in network.parameters()}
    assert isinstance(attack_model(network, "smoothed_snn"), SmoothedSNN)
    assert isinstance(attack_model(network, "snn"), SNNLogits)
    with pytest.raises(ValueError, match="smoothed_snn"):
        attack_model(network, "surrogate")
    with pytest.raises(ValueError, match="attack model"):
        FGSMTransfer(attack_model="ANN")


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_ann_attack_moves_every_frame_by_the_sign_of_the_mean_input_gradient(architecture):
    network, frames, labels = network_and_batch(architecture)
    ann = ANNCounterpart(network)
    rates = frames.mean(dim=1).requires_grad_(True)
    (gradient,) = torch.autograd.grad(F.cross_entropy(ann.forward(rates.unsqueeze(1)), labels), rates)
    assert (gradient != 0).float().mean() > 0.9
    for epsilon in (0.001, 0.05):
        perturbed = fgsm(ann, frames, labels, epsilon)
        # the same eps * sign(dL/d mean input) on every frame, then clamped to [0, 1]
        expected = torch.clamp(frames + epsilon * gradient.sign().unsqueeze(1), 0, 1)
        torch.testing.assert_close(perturbed, expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("attacker", ["counterpart", "smoothed_snn", "snn"])
def test_fgsm_has_the_documented_size_and_raises_the_loss(attacker):
    network, frames, labels = network_and_batch("rec")
    model = attack_model(network, attacker)
    network.train()
    for epsilon in (0.001, 0.01, 0.05):
        perturbed = fgsm(model, frames, labels, epsilon)
        delta = (perturbed - frames).abs()
        assert perturbed.min() >= 0 and perturbed.max() <= 1
        assert delta.max().item() == pytest.approx(epsilon, rel=1e-4)  # L-inf = eps
        changed = delta[delta > 0]
        assert changed.numel() > 0.2 * delta.numel()
        torch.testing.assert_close(changed, torch.full_like(changed, epsilon), rtol=1e-4, atol=0)  # every change is eps
        with torch.no_grad():
            assert F.cross_entropy(model(perturbed), labels) > F.cross_entropy(model(frames), labels)
    assert network.training, "fgsm must leave the network's train/eval mode alone"
    torch.testing.assert_close(fgsm(model, frames, labels, 0.0), frames)


def test_callbacks_run_under_trainer_test_and_validate(tmp_path, tiny_data):
    model = tiny_model("rec")
    fit = tiny_trainer(tmp_path / "fit", [], max_epochs=2)
    fit.fit(model, tiny_data)
    reference = tmp_path / "reference.ckpt"
    fit.save_checkpoint(reference)

    out = tmp_path / "out"
    callbacks = [
        FGSMTransfer(epsilons=[0.01, 0.1], output_dir=str(out)),
        AdversarialCKA(epsilons=[0.01, 0.1], num_samples=None, output_dir=str(out)),
        CKAComparison(references=[str(reference)], num_samples=40, output_dir=str(out)),
    ]
    trainer = tiny_trainer(tmp_path, callbacks)
    (metrics,) = trainer.test(model, tiny_data)  # Lightning's inference mode is left on

    fgsm_table = pd.read_csv(out / "fgsm_test.csv")
    assert fgsm_table.epsilon.tolist() == [0.0, 0.01, 0.1]
    assert fgsm_table.snn_accuracy[0] == pytest.approx(metrics["test_acc"])  # clean row = the test step's accuracy
    assert fgsm_table.attack_model_accuracy[2] < fgsm_table.attack_model_accuracy[0]
    assert fgsm_table.num_samples[0] == len(tiny_data.test_dataset)

    adversarial = pd.read_csv(out / "adversarial_cka_test.csv")
    assert len(adversarial) == 2 * 3 and adversarial.cka.between(-0.1, 1.0 + 1e-9).all()
    strong, weak = (adversarial[adversarial.epsilon == e].cka.mean() for e in (0.1, 0.01))
    assert strong < weak  # larger perturbations move the representations further

    cka = json.loads((out / "cka_test.json").read_text())
    matrix = torch.tensor(cka["references"][str(reference)]["matrix"])
    assert cka["model_layers"] == ["hidden1", "hidden2", "output"] and cka["num_samples"] == 40
    torch.testing.assert_close(matrix.diagonal(), torch.ones(3, dtype=matrix.dtype))  # the checkpoint is this model
    for name in ("fgsm_test.png", "adversarial_cka_test.png", "cka_test.png", "cka_test.csv", "fgsm_test.json"):
        assert (out / name).stat().st_size > 0

    # Subtracting a run's own CSV gives zero; the validate stage writes its own files.
    def subtracting(stages):
        return AdversarialCKA(epsilons=[0.01, 0.1], num_samples=None, subtract=str(out / "adversarial_cka_test.csv"),
                              stages=stages, output_dir=str(out))

    tiny_trainer(tmp_path, [subtracting(["validate"])]).validate(model, tiny_data)
    tiny_trainer(tmp_path, [subtracting(["test"])]).test(model, tiny_data)
    difference = pd.read_csv(out / "adversarial_cka_test_difference.csv")
    assert len(difference) == 6 and difference.cka.abs().max() < 1e-9
    assert (out / "adversarial_cka_validate.csv").exists() and (out / "adversarial_cka_validate_difference.png").exists()


@pytest.fixture(scope="module")
def conversion_checkpoint(tmp_path_factory):
    """A conversion run (its ANN trained 2 epochs on the tiny events) saved as a Lightning checkpoint."""
    folder = tmp_path_factory.mktemp("conversion")
    torch.manual_seed(0)
    model = SpikingClassifier(TinyEvents.num_inputs, TinyEvents.num_classes, learner=Conversion(), hidden_sizes=(16, 8), lr=1e-2)
    fit = tiny_trainer(folder, [], max_epochs=2)
    fit.fit(model, TinyEvents())
    path = folder / "conversion.ckpt"
    fit.save_checkpoint(path)
    return path


def test_trained_ann_is_the_conversion_runs_ann_and_refuses_other_rules(conversion_checkpoint, tmp_path):
    loaded = SpikingClassifier.load_from_checkpoint(conversion_checkpoint)
    frames = (torch.rand(6, TinyEvents.num_steps, TinyEvents.num_inputs) < 0.3).float()
    ann = TrainedANN.from_checkpoint(str(conversion_checkpoint))
    weights = loaded.learner.ann_weights(loaded.network)  # the ANN's weights, not the converted SNN's
    expected = torch.relu(torch.relu(frames.sum(1) @ weights[0].t()) @ weights[1].t()) @ weights[2].t()
    torch.testing.assert_close(ann(frames), expected)
    assert not any(p.requires_grad for p in ann.parameters())  # frozen: FGSM differentiates w.r.t. the input only
    snn = tmp_path / "bptt.ckpt"
    trainer = tiny_trainer(tmp_path, [])
    trainer.fit(tiny_model("ff"), TinyEvents(per_class=4))
    trainer.save_checkpoint(snn)
    with pytest.raises(ValueError, match="learner trains an ANN"):
        TrainedANN.from_checkpoint(str(snn))
    with pytest.raises(ValueError, match="needs ann_checkpoint"):
        FGSMTransfer(attack_model="ann")
    assert FGSMTransfer(ann_checkpoint=str(conversion_checkpoint)).attack_model == "ann"
    assert FGSMTransfer().attack_model == "counterpart"


def test_ann_attack_gives_ff_and_rec_the_same_perturbed_samples(conversion_checkpoint):
    """The paper's protocol: one ANN crafts the perturbation, every SNN sees the same samples (not so for counterparts)."""
    frames = (torch.rand(8, TinyEvents.num_steps, TinyEvents.num_inputs, generator=torch.Generator().manual_seed(3)) < 0.3).float()
    labels = torch.arange(8) % TinyEvents.num_classes
    ff, rec = tiny_model("ff", seed=1).network, tiny_model("rec", seed=2).network
    shared = Attack(ann_checkpoint=str(conversion_checkpoint))
    perturbed = [fgsm(shared.model(net, torch.device("cpu")), frames, labels, 0.05) for net in (ff, rec)]
    assert not torch.equal(perturbed[0], frames)
    assert torch.equal(perturbed[0], perturbed[1])
    own = [fgsm(Attack("counterpart").model(net, torch.device("cpu")), frames, labels, 0.05) for net in (ff, rec)]
    assert not torch.equal(own[0], own[1])


def test_fgsm_callback_attacks_with_the_trained_ann(conversion_checkpoint, tmp_path, tiny_data):
    out = tmp_path / "out"
    model = tiny_model("rec")
    callback = FGSMTransfer(epsilons=[0.4], ann_checkpoint=str(conversion_checkpoint), output_dir=str(out))
    tiny_trainer(tmp_path, [callback]).test(model, tiny_data)
    written = json.loads((out / "fgsm_test.json").read_text())
    assert written["attack_model"] == "ann" and written["ann_checkpoint"] == str(conversion_checkpoint)
    ann = TrainedANN.from_checkpoint(str(conversion_checkpoint))
    frames, labels = next(iter(tiny_data.test_dataloader()))
    rows = written["rows"]
    assert rows[1]["attack_model_accuracy"] < rows[0]["attack_model_accuracy"]  # the ANN is the model attacked
    with torch.no_grad():
        clean = (ann(frames).argmax(-1) == labels).float().mean().item()
    assert clean > 0.5  # a trained ANN, not an untrained stand-in
