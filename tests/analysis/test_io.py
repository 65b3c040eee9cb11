"""Atomic result files and the output folder."""

import json
import math

import pytest
from matplotlib.figure import Figure

from lightning_local.analysis.io import analysis_dir, save_figure, write_csv, write_json


def test_files_are_written_atomically_and_nan_becomes_null(tmp_path):
    folder = tmp_path / "deep" / "er"
    write_csv(folder / "a.csv", [{"x": 1, "y": 0.5}, {"x": 2, "y": math.nan}])
    write_json(folder / "a.json", {"value": math.nan, "list": [1.0, math.inf]})
    figure = Figure()
    figure.subplots().plot([0, 1])
    save_figure(figure, folder / "a.png")
    assert (folder / "a.csv").read_text().splitlines() == ["x,y", "1,0.5", "2,"]
    assert json.loads((folder / "a.json").read_text()) == {"value": None, "list": [1.0, None]}
    assert (folder / "a.png").read_bytes()[:4] == b"\x89PNG"
    write_json(folder / "a.json", {"value": 2})  # replaces
    assert json.loads((folder / "a.json").read_text()) == {"value": 2}
    assert sorted(p.name for p in folder.iterdir()) == ["a.csv", "a.json", "a.png"]  # no temporary files left


def test_a_failed_write_keeps_the_old_file(tmp_path):
    write_json(tmp_path / "r.json", {"ok": True})
    with pytest.raises(TypeError):
        write_json(tmp_path / "r.json", {"bad": object()})
    assert json.loads((tmp_path / "r.json").read_text()) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_output_folder_defaults_to_the_log_dir(tmp_path):
    class Trainer:
        log_dir, default_root_dir = str(tmp_path / "logs" / "version_3"), str(tmp_path)

    assert analysis_dir(Trainer()) == tmp_path / "logs" / "version_3" / "analysis"
    assert analysis_dir(Trainer(), str(tmp_path / "mine")) == tmp_path / "mine"
    Trainer.log_dir = None
    assert analysis_dir(Trainer()) == tmp_path / "analysis"
