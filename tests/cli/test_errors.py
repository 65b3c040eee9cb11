"""Every user error of issue 12's list ends in exactly one line `lightning-local: error: ...` and exit status 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lightning_local.cli.main import main

PREFIX = "lightning-local: error: "


@pytest.fixture(scope="module")
def trained(nmnist_small, tmp_path_factory) -> dict[str, Path]:
    """A small FF checkpoint on the real recordings, damaged copies of it, and a data folder with a corrupt file."""
    base = tmp_path_factory.mktemp("errors")
    main(["fit", "--data", "nmnist", "--data.root", str(nmnist_small), "--data.n_time_bins", "10",
          "--model.hidden_sizes", "[16]", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
          "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false", "--test_after_fit", "false",
          "--trainer.enable_model_summary", "false", "--trainer.logger.init_args.save_dir", str(base / "runs")])
    (last,) = (base / "runs").rglob("last.ckpt")
    data = last.read_bytes()
    (base / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    (base / "empty.ckpt").write_bytes(b"")
    (base / "random.ckpt").write_bytes(bytes(range(256)) * 64)
    corrupt = base / "corrupt"
    for digit in range(10):
        (corrupt / "Train" / str(digit)).mkdir(parents=True)
        for i, file in enumerate(sorted((nmnist_small / "Train" / str(digit)).glob("*.bin"))[:3]):
            shutil.copy(file, corrupt / "Train" / str(digit) / f"{i:05d}.bin")
    (corrupt / "Train" / "6" / "00001.bin").write_bytes(bytes(range(250)))  # 50 "events" of random-looking bytes
    return {"last": last, "base": base, "corrupt": corrupt}


def nmnist(root: str = "NMNIST_ROOT") -> list[str]:
    return ["--data", "nmnist", "--data.root", root, "--data.n_time_bins", "10"]


# (name, arguments, words the line must contain). NMNIST_ROOT, CKPT, DIR and CORRUPT are filled in per test.
CASES = [
    ("batch_size 0", ["fit", *nmnist(), "--data.batch_size", "0"], ["--data.batch_size must be >= 1, got 0"]),
    ("n_time_bins 0", ["fit", *nmnist(), "--data.n_time_bins", "0"], ["--data.n_time_bins must be >= 1"]),
    ("val_fraction 1", ["fit", *nmnist(), "--data.val_fraction", "1.0"], ["--data.val_fraction must be in [0, 1)"]),
    ("negative hidden size", ["fit", *nmnist(), "--model.hidden_sizes", "[-5]"], ["hidden_sizes"]),
    ("zero hidden size", ["fit", *nmnist(), "--model.hidden_sizes", "[0]"], ["hidden_sizes"]),
    ("lr -1", ["fit", *nmnist(), "--model.lr", "-1"], ["lr"]),
    ("lr 0", ["fit", *nmnist(), "--model.lr", "0"], ["lr"]),
    ("max_epochs -3", ["fit", *nmnist(), "--trainer.max_epochs", "-3"], ["max_epochs", "-3"]),
    ("hidden_sizes abc", ["fit", "--model.hidden_sizes", "abc"], ["--model.hidden_sizes", "abc"]),
    ("unknown flag", ["fit", "--model.nonsense", "3"], ["--model.nonsense"]),
    ("dvsgesture without root", ["fit", "--data", "dvsgesture"], ["--data.root is required by DVSGesture"]),
    ("unknown learner", ["fit", "--learner", "hebbian_magic"], ["Unknown learner 'hebbian_magic'", "bptt"]),
    ("bad learner option", ["fit", *nmnist(), "--learner", "sltt", "--learner.k", "0"], ["SLTT's k must be a positive"]),
    ("bad learner option of another rule", ["fit", *nmnist(), "--learner", "decolle", "--learner.update_every", "0"],
     ["update_every must be >= 1"]),
    ("unknown dataset", ["fit", "--data", "cifar_dvs"], ["Unknown dataset 'cifar_dvs'", "nmnist"]),
    ("missing data offline", ["fit", *nmnist("DIR/nowhere"), "--data.download", "false"], ["N-MNIST not found"]),
    ("corrupt event file", ["fit", *nmnist("CORRUPT")], ["00001.bin", "--data.skip_bad_files true"]),
    ("test without checkpoint", ["test", *nmnist()], ["`test` needs a trained model", "--ckpt_path"]),
    ("validate without checkpoint", ["validate", *nmnist()], ["`validate` needs a trained model"]),
    ("missing checkpoint", ["test", *nmnist(), "--ckpt_path", "DIR/missing.ckpt"], ["missing.ckpt does not exist"]),
    ("empty checkpoint", ["test", *nmnist(), "--ckpt_path", "DIR/empty.ckpt"], ["empty.ckpt cannot be read"]),
    ("truncated checkpoint", ["test", *nmnist(), "--ckpt_path", "DIR/truncated.ckpt"], ["truncated.ckpt cannot be read"]),
    ("random checkpoint", ["test", *nmnist(), "--ckpt_path", "DIR/random.ckpt"], ["random.ckpt cannot be read"]),
    ("checkpoint of other data shape", ["test", *nmnist(), "--data.downsample", "2", "--ckpt_path", "CKPT"],
     ["trained with 2312 inputs per time step, but this data gives 578"]),
    ("flag contradicting the checkpoint", ["test", *nmnist(), "--model.architecture", "rec", "--ckpt_path", "CKPT"],
     ["--model.architecture 'rec' but it was trained with 'ff'"]),
    ("hidden sizes contradicting the checkpoint", ["validate", *nmnist(), "--model.hidden_sizes", "[32]", "--ckpt_path", "CKPT"],
     ["--model.hidden_sizes [32] but it was trained with [16]"]),
    ("resume without a run", ["fit", *nmnist(), "--ckpt_path", "last", "--trainer.logger.init_args.save_dir", "DIR/empty_runs"],
     ["--ckpt_path last: no run under"]),
]


@pytest.mark.parametrize("name, args, words", CASES, ids=[case[0] for case in CASES])
def test_user_error_is_one_line(trained, nmnist_small, tmp_path, capfd, monkeypatch, name, args, words):
    monkeypatch.chdir(tmp_path)  # anything a failing run would write lands here
    fill = {"NMNIST_ROOT": str(nmnist_small), "CKPT": str(trained["last"]), "CORRUPT": str(trained["corrupt"])}
    args = [fill.get(a, a.replace("DIR", str(trained["base"]))) for a in args]
    capfd.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_info.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith(PREFIX), err
    for word in words:
        assert word in lines[0], lines[0]
    assert not list(tmp_path.glob("runs/*/*")), "a failed run leaves no run folder behind"
