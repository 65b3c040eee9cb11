"""The data choices that follow from the model (lightning_local.data.choices): the rule, and the same choice made
by the command line and by a data module a Python script hands to a Trainer."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import yaml

from lightning_local.cli.main import main
from lightning_local.data import SaccadeDigits
from lightning_local.data.backdoor import Backdoor
from lightning_local.data.choices import ModelFacts, resolve_data_choices, runs_on_cpu
from lightning_local.data.errors import DataArgumentError
from lightning_local.module import SpikingClassifier
from support.callbacks import RecordDataChoices

FC_SPARSE_CPU = ModelFacts(convolutional=False, sparse_rule=True, on_cpu=True)
EVENT_DEFAULTS = {"layout": "flat", "sparse_input": None, "frame_cache": True, "unpack_on_device": False}


@pytest.mark.parametrize("facts, init_args, wrapped, choices", [
    (FC_SPARSE_CPU, {}, False, {"sparse_input": True}),
    (dataclasses.replace(FC_SPARSE_CPU, on_cpu=False), {}, False, {"sparse_input": False}),       # a GPU run
    (dataclasses.replace(FC_SPARSE_CPU, sparse_rule=False), {}, False, {"sparse_input": False}),  # e.g. eprop
    (dataclasses.replace(FC_SPARSE_CPU, convolutional=True), {}, False, {"layout": "image", "sparse_input": False}),
    (FC_SPARSE_CPU, {"frame_cache": False}, False, {"sparse_input": False}),
    (FC_SPARSE_CPU, {"unpack_on_device": True}, False, {"sparse_input": False}),
    (FC_SPARSE_CPU, {"layout": "image"}, False, {"sparse_input": False}),
    (FC_SPARSE_CPU, {}, True, {"sparse_input": False}),                                  # a wrapper's base
    (FC_SPARSE_CPU, {"sparse_input": False}, False, {}),                                 # an explicit choice stands
    (dataclasses.replace(FC_SPARSE_CPU, convolutional=True), {"layout": "image", "sparse_input": True}, False, {}),
])
def test_the_rule(facts, init_args, wrapped, choices):
    assert resolve_data_choices({**EVENT_DEFAULTS, **init_args}, facts, wrapped) == choices


def test_a_module_without_the_arguments_keeps_what_it_has():
    """Speech modules have neither a layout nor sparse batches."""
    assert resolve_data_choices({"batch_size": 8}, dataclasses.replace(FC_SPARSE_CPU, convolutional=True)) == {}


def test_accelerator_names():
    assert runs_on_cpu("cpu") and not runs_on_cpu("gpu") and not runs_on_cpu("cuda")
    assert runs_on_cpu("auto") == (not pl.accelerators.CUDAAccelerator.is_available()
                                   and not pl.accelerators.MPSAccelerator.is_available())


# ------------------------------------------------------------- the command line and the Python API agree
DATA = {"n_time_bins": 5, "downsample": 4, "batch_size": 16, "max_samples_per_class": 10}
CONV = {"synapse": "conv", "channels": [2], "kernel_size": 3}
CASES = {  # name: (learner, model arguments, data arguments, wrapped in a Backdoor)
    "bptt": ("bptt", {}, {}, False),
    "eprop": ("eprop", {}, {}, False),
    "bptt conv": ("bptt", CONV, {}, False),
    "bptt without frame cache": ("bptt", {}, {"frame_cache": False}, False),
    "bptt conv backdoor": ("bptt", CONV, {}, True),
}


def _flags(prefix: str, values: dict) -> list[str]:
    return [f"--{prefix}.{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in values.items()]


def _through_the_cli(name: str, root: Path, folder: Path) -> tuple[dict, dict]:
    learner, model, data, wrapped = CASES[name]
    base = "data.base" if wrapped else "data"
    wrapper = ["--data", "lightning_local.data.backdoor.Backdoor", "--data.source", "1", "--data.target", "2",
               "--data.base", "saccade_digits"] if wrapped else []
    record = folder / "record.json"
    main(["fit", "--learner", learner, *wrapper, f"--{base}.root", str(root), *_flags(base, {**DATA, **data}),
          "--model.hidden_sizes", "[16]", *_flags("model", model), "--trainer.max_steps", "1",
          "--trainer.limit_val_batches", "1", "--test_after_fit", "false", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false", "--trainer.logger.init_args.save_dir", str(folder / "runs"),
          "--trainer.callbacks+=support.callbacks.RecordDataChoices", f"--trainer.callbacks.path={record}"])
    (config,) = (folder / "runs").rglob("config.yaml")
    saved = yaml.safe_load(config.read_text())["data"]
    init = saved["init_args"]["base"]["init_args"] if wrapped else saved["init_args"]
    return json.loads(record.read_text()), {"layout": init["layout"], "sparse_input": init["sparse_input"]}


def _through_the_python_api(name: str, root: Path, folder: Path) -> dict:
    """What a script does: a data module with its defaults, the model, a Trainer (default accelerator)."""
    learner, model, data, wrapped = CASES[name]
    events = SaccadeDigits(root=str(root), **DATA, **data)
    module = Backdoor(events, source=1, target=2) if wrapped else events
    # A conv net is given image-shaped input explicitly; the data module is left at its flat default.
    image = dataclasses.replace(events.to_frames, layout="image").input_shape
    classifier = SpikingClassifier(module.num_inputs, module.num_classes, learner=learner, hidden_sizes=[16],
                                   input_shape=image if model else None, **model)
    record = folder / "record.json"
    trainer = pl.Trainer(max_steps=1, limit_val_batches=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[RecordDataChoices(str(record))])
    trainer.fit(classifier, datamodule=module)
    return json.loads(record.read_text())


@pytest.mark.filterwarnings("ignore:`ModelCheckpoint\\(monitor='val_acc'\\)` could not find")
@pytest.mark.parametrize("name", list(CASES))
def test_the_python_api_chooses_like_the_command_line(name, tiny_digits, tmp_path, single_thread):
    cli, saved = _through_the_cli(name, tiny_digits, tmp_path / "cli")
    api = _through_the_python_api(name, tiny_digits, tmp_path / "api")
    assert api == cli
    assert saved == cli["modules"][-1], "config.yaml records the choice"
    learner, model, data, _ = CASES[name]
    sparse = learner == "bptt" and not model and not data and runs_on_cpu("auto")
    assert cli["modules"][-1] == {"layout": "image" if model else "flat", "sparse_input": sparse}
    assert cli["frames"] == ("SparseFrames" if sparse else "Tensor")
    assert cli["frame_shape"] == ([2, 9, 9] if model else [162])


def test_explicit_sparse_input_does_not_fit_a_conv_model(tiny_digits):
    events = SaccadeDigits(root=str(tiny_digits), **DATA, sparse_input=True)  # fine for a fully connected net
    with pytest.raises(DataArgumentError, match="--data.sparse_input must be false with --data.layout image"):
        events.follow_model(dataclasses.replace(FC_SPARSE_CPU, convolutional=True))


def test_a_module_set_up_by_hand_keeps_its_defaults(tiny_digits):
    events = SaccadeDigits(root=str(tiny_digits), **DATA)
    events.setup("fit")
    assert (events.layout, events.sparse_input) == ("flat", None)  # None: dense batches
