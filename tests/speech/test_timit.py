"""TIMIT on the shared sample and on small corpora built from it (lower case, SPHERE, broken transcriptions)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from lightning_local.cli.main import main
from lightning_local.data.errors import DatasetNotFoundError
from lightning_local.data.speech import SpeechDataError
from lightning_local.data.timit import CORE_TEST_SPEAKERS, PHONE_CLASSES, PHONE_FOLDING, TIMIT, phone_frame_labels, read_phn

SPEAKER = "TIMIT/TRAIN/DR1/FVMH0"


def build_corpus(tmp: Path, source: Path, utterances: dict[str, list[str]], lower: bool = False, sphere: bool = False) -> Path:
    """A TRAIN/TEST corpus under ``tmp`` whose ``split/DRx/SPEAKER/UTT`` come from ``source`` files (links or SPHERE copies)."""
    for target, sources in utterances.items():
        folder = tmp / (target.lower() if lower else target)
        folder.mkdir(parents=True, exist_ok=True)
        for name in sources:
            stem = Path(name).name
            for ext in (".WAV", ".PHN"):
                out = folder / ((stem + ext).lower() if lower else stem + ext)
                if ext == ".WAV" and sphere:
                    samples, rate = soundfile.read(source / f"{name}{ext}", dtype="int16")
                    soundfile.write(out, samples, rate, format="NIST", subtype="PCM_16")
                else:
                    os.symlink(source / f"{name}{ext}", out)
    return tmp


def small_corpus(tmp: Path, sample: Path, **kwargs) -> Path:
    train = {"TRAIN/DR1/FVMH0": ["TIMIT/TRAIN/DR1/FVMH0/SX116", "TIMIT/TRAIN/DR1/FVMH0/SX206"],
             "TRAIN/DR1/MCPM0": ["TIMIT/TRAIN/DR1/MCPM0/SX114", "TIMIT/TRAIN/DR1/MCPM0/SX204"]}
    test = {"TEST/DR6/FAPB0": ["TIMIT/TEST/DR6/FAPB0/SX163"]}
    return build_corpus(tmp, sample, {**train, **test}, **kwargs)


def test_folding_is_the_standard_61_to_39_map(timit_sample):
    rows = [line.split() for line in (timit_sample / "phones.60-48-39.map").read_text().splitlines() if line.strip()]
    expected = {row[0]: (row[2] if len(row) == 3 else None) for row in rows}
    assert PHONE_FOLDING == expected and len(PHONE_FOLDING) == 61 and PHONE_FOLDING["q"] is None
    assert len(PHONE_CLASSES) == 39 and list(PHONE_CLASSES) == sorted(PHONE_CLASSES)


def test_frame_labels_take_the_phone_at_the_frame_centre():
    segments = [(0, 100, "h#"), (100, 250, "q"), (250, 400, "ao"), (400, 450, "zh")]
    labels = phone_frame_labels(segments, num_frames=6, hop=100)  # centres 0, 100, ..., 500
    sil, aa, sh = (PHONE_CLASSES.index(p) for p in ("sil", "aa", "sh"))
    assert labels.dtype == np.int64 and labels.tolist() == [sil, -100, -100, aa, sh, -100]


def test_sample_splits_labels_and_batches(timit_sample):
    data = TIMIT(root=str(timit_sample), batch_size=4)
    assert (data.num_inputs, data.num_classes, data.num_steps) == (39, 39, None)
    data.setup()
    train, val, test = data.train_dataset, data.val_dataset, data.test_dataset
    speakers = [{u.speaker for u in split.utterances} for split in (train, val, test)]
    assert len(speakers[1]) == 1 and not speakers[0] & speakers[1]  # validation: one whole TRAIN speaker
    assert speakers[2] == {"FAPB0", "MBMA1"} and len(test) == 16  # TEST without the SA sentences
    assert len(train) + len(val) == 80  # 10 speakers x 8 SI/SX sentences
    assert not any(Path(u.path).name.startswith("SA") for s in (train, val, test) for u in s.utterances)
    # Training statistics normalise: mean 0, std 1 on train; other splits reuse them.
    frames = torch.cat(train.features)
    assert torch.allclose(frames.mean(0), torch.zeros(39), atol=1e-4) and torch.allclose(frames.std(0), torch.ones(39), atol=1e-3)
    assert torch.cat(test.features).mean(0).abs().max() > 1e-3
    # One label per frame, from the .PHN (checked against a plain loop over the segments).
    utterance, labels = train.utterances[0], train.targets[0]
    samples = soundfile.info(utterance.path).frames
    assert len(labels) == len(train.features[0]) == 1 + samples // 160
    segments = read_phn(utterance.transcription)
    for i, label in enumerate(labels.tolist()):
        phone = next((p for s, e, p in segments if s <= i * 160 < e), None)
        folded = PHONE_FOLDING.get(phone) if phone else None
        assert label == (PHONE_CLASSES.index(folded) if folded else -100)
    frames, labels = next(iter(data.test_dataloader()))
    lengths = [len(f) for f in test.features[:4]]
    assert frames.dtype == torch.float32 and labels.dtype == torch.int64
    assert frames.shape == (4, max(lengths), 39) and labels.shape == (4, max(lengths))
    for i, n in enumerate(lengths):
        assert torch.equal(frames[i, :n], test.features[i]) and torch.equal(labels[i, :n], test.targets[i])
        assert (labels[i, n:] == -100).all() and (frames[i, n:] == 0).all()
    assert ((labels >= 0) & (labels < 39) | (labels == -100)).all()


def test_sa_sentences_can_be_included(timit_sample):
    data = TIMIT(root=str(timit_sample), include_sa=True)
    train, test = data.find_utterances()
    assert len(test) == 20 and sum(Path(u.path).name.startswith("SA") for u in test) == 4


def test_core_test_set(timit_sample, tmp_path):
    with pytest.raises(SpeechDataError, match="core test set needs the full corpus.*--data.test_set full"):
        TIMIT(root=str(timit_sample), test_set="core").find_utterances()
    source = "TIMIT/TEST/DR6/FAPB0/SX163"
    layout = {f"TEST/DR1/{s}": [source] for s in sorted(CORE_TEST_SPEAKERS) + ["MXXX0"]}
    layout["TRAIN/DR1/FVMH0"] = [f"{SPEAKER}/SX116"]
    root = build_corpus(tmp_path, timit_sample, layout)
    _, core = TIMIT(root=str(root), test_set="core").find_utterances()
    _, full = TIMIT(root=str(root)).find_utterances()
    assert {u.speaker for u in core} == CORE_TEST_SPEAKERS and len(full) == 25


def test_lower_case_layout_and_sphere_audio_give_the_same_data(timit_sample, tmp_path):
    reference = TIMIT(root=str(small_corpus(tmp_path / "upper", timit_sample)), val_fraction=0.5)
    lower = TIMIT(root=str(small_corpus(tmp_path / "lower", timit_sample, lower=True)), val_fraction=0.5)
    sphere = TIMIT(root=str(small_corpus(tmp_path / "sphere", timit_sample, sphere=True)), val_fraction=0.5)
    for data in (reference, lower, sphere):
        data.setup()
    for data in (lower, sphere):
        for name in ("train_dataset", "val_dataset", "test_dataset"):
            ours, theirs = getattr(data, name), getattr(reference, name)
            assert [u.speaker for u in ours.utterances] == [u.speaker for u in theirs.utterances]
            for a, b in zip(ours.features + ours.targets, theirs.features + theirs.targets):
                assert torch.equal(a, b)


def run_cli(root: Path, tmp_path: Path, monkeypatch, capsys) -> str:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--data", "timit", "--data.root", str(root), "--trainer.max_epochs", "1"])
    assert exit_info.value.code == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lightning-local: error:")]
    return line


def test_phn_past_the_end_of_the_audio_is_one_line(timit_sample, tmp_path, monkeypatch, capsys):
    root = small_corpus(tmp_path / "corpus", timit_sample)
    phn = root / "TRAIN/DR1/MCPM0/SX114.PHN"
    lines = Path(os.readlink(phn)).read_text().splitlines()
    phn.unlink()
    start, _, phone = lines[-1].split()
    phn.write_text("\n".join(lines[:-1] + [f"{start} 999999 {phone}"]) + "\n")
    line = run_cli(root, tmp_path, monkeypatch, capsys)
    assert "SX114.PHN runs to sample 999999, past the end of its audio" in line
    with pytest.raises(SpeechDataError, match="past the end"):
        TIMIT(root=str(root)).setup()


def test_a_phn_ending_a_sample_late_is_accepted(timit_sample):
    # The corpus itself has such a file: SA1 of FVMH0 ends one sample after its audio.
    data = TIMIT(root=str(timit_sample), include_sa=True)
    (utterance,) = [u for u in data.find_utterances()[0] if u.path.endswith("FVMH0/SA1.WAV")]
    assert max(e for _, e, _ in read_phn(utterance.transcription)) == soundfile.info(utterance.path).frames + 1
    assert len(data.frame_labels(utterance, 342)) == 342


def test_missing_phn_and_missing_corpus_are_one_line(timit_sample, tmp_path, monkeypatch, capsys):
    root = small_corpus(tmp_path / "corpus", timit_sample)
    (root / "TEST/DR6/FAPB0/SX163.PHN").unlink()
    line = run_cli(root, tmp_path, monkeypatch, capsys)
    assert "SX163.WAV has no transcription SX163.PHN" in line
    line = run_cli(tmp_path / "nowhere", tmp_path, monkeypatch, capsys)
    assert "TIMIT not found" in line and "LDC93S1" in line and "cannot be downloaded" in line
    with pytest.raises(DatasetNotFoundError, match="no --data.root given"):
        TIMIT().setup()
    shutil.rmtree(root / "TEST")
    assert "TIMIT not found" in run_cli(root, tmp_path, monkeypatch, capsys)
