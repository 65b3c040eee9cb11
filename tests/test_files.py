"""Atomic writes: the whole file or the old one, with the permissions of an ordinary file."""

import os

import pytest

from lightning_local.files import atomic_write, write_text_atomic


def test_written_files_get_the_umask_permissions_not_mkstemps_0600(tmp_path):
    mask = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "result.json", "{}")
    finally:
        os.umask(mask)
    assert path.read_text() == "{}"
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "result.json", "old")

    def fail(handle):
        handle.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
