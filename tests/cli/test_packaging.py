"""Installability: third-party learner plugins and the wheel's namespace."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from support.packages import install_package

REPO = Path(__file__).resolve().parents[2]

TOY_LEARNER = '''
"""A third-party rule: BPTT that only trains the output layer (and leaves a marker)."""
import os
from pathlib import Path

from lightning_local.learners import Learner, LearnerStep
from lightning_local.models import per_step_cross_entropy


class ReadoutOnly(Learner):
    name = "readout_only"
    search_space = {"model.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}}  # its own, for `tune`

    def attach(self, network):
        for layer in network.layers[:-1]:
            layer.weight.requires_grad_(False)

    def training_step(self, module, frames, labels):
        Path(os.environ["TOY_MARKER"]).write_text("used")
        output = module.network(frames)
        loss = per_step_cross_entropy(output.output_membrane, labels)
        return LearnerStep(loss=loss.detach(), logits=output.logits.detach(), objective=loss)
'''


def install_toy_plugin(tmp_path: Path) -> Path:
    """Build and install a throw-away package that registers the `readout_only` learner."""
    return install_package(tmp_path, "toy_rules", TOY_LEARNER, "lightning_local.learners", "readout_only", "ReadoutOnly")


@pytest.mark.slow
def test_separately_installed_learner_is_found_and_trains(nmnist_small, tmp_path):
    site = install_toy_plugin(tmp_path)
    marker = tmp_path / "marker.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), "TOY_MARKER": str(marker)}
    run = subprocess.run(
        [sys.executable, "-m", "lightning_local.cli.main", "fit", "--learner", "readout_only",
         "--data", "nmnist", "--data.root", str(nmnist_small), "--data.n_time_bins", "20", "--data.batch_size", "16",
         "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
         "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false",
         "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert marker.read_text() == "used"
    (config,) = (tmp_path / "runs").rglob("config.yaml")
    assert "toy_rules.ReadoutOnly" in config.read_text()

    # `tune` searches the space the plugin declares
    study = tmp_path / "study"
    tuned = subprocess.run(
        [sys.executable, "-m", "lightning_local.cli.main", "tune", "--config", str(config), "--trials", "1",
         "--output", str(study), "--trainer.max_epochs", "1"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    assert list(yaml.safe_load((study / "space.yaml").read_text())) == ["model.lr"]
    assert "toy_rules.ReadoutOnly" in (study / "best.yaml").read_text()

    # without the plugin on the path, the name is unknown and the error lists what exists
    missing = subprocess.run([sys.executable, "-m", "lightning_local.cli.main", "fit", "--learner", "readout_only"],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "available learners are" in missing.stderr and "bptt" in missing.stderr


@pytest.mark.slow
def test_wheel_namespaces_plugins_and_cli_under_lightning_local(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(REPO)],
        check=True,
    )
    (wheel,) = tmp_path.glob("lightning_local-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"lightning_local", next(t for t in top_level if t.endswith(".dist-info"))}
    assert "lightning_local/plugins/bptt.py" in names and "lightning_local/cli/main.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "lightning-local = lightning_local.cli.main:main" in text
    assert "bptt = lightning_local.plugins.bptt:BPTT" in text
