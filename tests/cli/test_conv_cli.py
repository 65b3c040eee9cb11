"""The convolutional network through `lightning-local fit` on the real recordings, and e-prop's refusal of it."""

from __future__ import annotations

import pytest
import torch
import yaml

from lightning_local.cli.main import main

PREFIX = "lightning-local: error: "


def nmnist_conv(root) -> list[str]:
    return ["--data", "nmnist", "--data.root", str(root), "--data.n_time_bins", "10", "--data.batch_size", "16",
            "--model.synapse", "conv", "--model.channels", "[4,4]", "--model.kernel_size", "3"]


def test_fit_trains_a_conv_net_on_image_frames(nmnist_small, tmp_path):
    main(["fit", *nmnist_conv(nmnist_small), "--model.architecture", "rec", "--trainer.max_epochs", "1",
          "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--test_after_fit", "false",
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
          "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    (config,) = (tmp_path / "runs").rglob("config.yaml")
    saved = yaml.safe_load(config.read_text())
    assert saved["data"]["init_args"]["layout"] == "image"  # switched by --model.synapse conv
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    # The model checks every batch against input_shape: two steps ran on [B, T, 2, 34, 34] frames.
    assert checkpoint["global_step"] == 2
    hparams = checkpoint["hyper_parameters"]
    assert hparams["synapse"] == "conv" and list(hparams["input_shape"]) == [2, 34, 34]
    weights = checkpoint["state_dict"]
    assert weights["network.layers.0.synapse.weight"].shape == (4, 2, 3, 3)
    assert weights["network.layers.1.synapse.weight"].shape == (4, 4, 3, 3)
    assert weights["network.layers.0.recurrent.weight"].shape == (4, 4, 3, 3)  # the recurrent convolution
    assert weights["network.layers.2.synapse.weight"].shape == (10, 4 * 34 * 34)  # dense readout


def test_eprop_on_a_conv_net_is_one_line(nmnist_small, tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--learner", "eprop", *nmnist_conv(nmnist_small),
              "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    _, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_info.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith(PREFIX), err
    assert "trains fully connected networks only" in lines[0] and "linear layers" in lines[0], lines[0]
    assert not list(tmp_path.glob("runs/*/*")), "a failed run leaves no run folder behind"
