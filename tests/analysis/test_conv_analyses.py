"""The evaluation analyses run on a convolutional network (image frames [B, T, C, H, W]).

Fisher on conv nets is checked against per-sample autograd in test_fisher.py."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_local.analysis import AdversarialCKA, CKAComparison, FGSMTransfer
from lightning_local.module import SpikingClassifier


def _trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, **kwargs)


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_analyses_on_a_conv_net(architecture, tmp_path, single_thread):
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (24,))
    rates = 0.1 + 0.3 * (labels[:, None, None, None] == torch.arange(2).view(1, 2, 1, 1)).float()
    frames = (torch.rand(24, 8, 2, 10, 10) < rates[:, None]).float()
    loader = DataLoader(TensorDataset(frames, labels), batch_size=8)
    model = SpikingClassifier(200, 3, architecture=architecture, synapse="conv", channels=[3, 4], kernel_size=3,
                              input_shape=(2, 10, 10), lr=1e-2)
    fit = _trainer(max_epochs=1, default_root_dir=tmp_path)
    fit.fit(model, loader, loader)
    reference = tmp_path / "reference.ckpt"
    fit.save_checkpoint(reference)
    out = tmp_path / "analysis"
    callbacks = [FGSMTransfer(epsilons=[0.05], output_dir=str(out)), AdversarialCKA(epsilons=[0.05], output_dir=str(out)),
                 CKAComparison(references=[str(reference)], output_dir=str(out))]
    _trainer(callbacks=callbacks, inference_mode=False).test(model, loader, verbose=False)
    fgsm = pd.read_csv(out / "fgsm_test.csv")
    assert set(fgsm.epsilon) == {0.0, 0.05}
    cka = pd.read_csv(out / "cka_test.csv")
    same = cka[cka.model_layer == cka.reference_layer]  # the reference is this very model
    assert len(cka) == 3 * 3 and np.allclose(same.cka, 1.0)
    assert np.isfinite(pd.read_csv(out / "adversarial_cka_test.csv").select_dtypes("number").to_numpy()).all()
