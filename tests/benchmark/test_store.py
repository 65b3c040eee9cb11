"""The SQLite results store: atomic claims, transactions, stale owners, concurrent writer processes."""

from __future__ import annotations

import multiprocessing
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from lightning_local.benchmark.store import STALE_AFTER, ResultStore, owner_id


def test_the_last_grid_invocation_is_kept_for_later_reports(tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")
    store.register(rows(1))
    assert store.last_invocation() is None
    store.record_invocation({"total": 1, "earlier": 0, "done": 1, "failed": 0, "seconds": 12.5, "results": [{"k": 1}]})
    store.record_invocation({"total": 1, "earlier": 1, "done": 1, "failed": 0, "seconds": 0.5, "results": []})
    assert store.last_invocation() == {"total": 1, "earlier": 1, "done": 1, "failed": 0, "seconds": 0.5}
    assert store.events("k0") == [], "a grid's event is no run's"
    assert ResultStore(store.path).last_invocation()["seconds"] == 0.5  # in the file, not in the object


def rows(n: int) -> list[dict]:
    return [{"key": f"k{i}", "kind": "train", "name": f"run {i}", "dataset": "d", "rule": "bptt", "arch": "ff",
             "seed": i, "config": {"seed_everything": i}, "run_dir": f"/tmp/r{i}"} for i in range(n)]


def test_claim_finish_and_reread(tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")
    store.register(rows(2))
    store.register(rows(2))  # registering again keeps the existing rows (and their status)
    assert [r["status"] for r in store.runs()] == ["pending", "pending"]
    me = owner_id()
    assert store.claim("k0", me) == "pending"
    assert store.claim("k0", me) is None, "a running run with a live owner cannot be claimed twice"
    assert not store.finish("k0", "otherhost:1", "done", 1.0), "only the owner finishes a run"
    assert store.finish("k0", me, "done", 2.5, metrics={"test_acc": 0.5}, paths={"run_dir": "/tmp/r0"})
    assert store.claim("k0", me) is None, "done runs are never claimed again"
    run = store.get("k0")
    assert run["status"] == "done" and run["metrics"] == {"test_acc": 0.5} and run["seconds"] == 2.5
    assert run["config"] == {"seed_everything": 0} and run["attempts"] == 1
    assert store.claim("k1", me) == "pending" and store.finish("k1", me, "failed", 1.0, error="boom")
    assert store.claim("k1", me) == "failed", "failed runs are retried"
    assert [e["event"] for e in store.events("k1")] == ["claim", "failed", "claim"]
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_stale_owners_are_interrupted(tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")
    store.register(rows(3))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.claim("k0", f"{socket.gethostname()}:{dead.pid}")  # a process of this host that is gone
    assert store.claim("k0", owner_id()) == "interrupted"
    now = time.time()
    store.claim("k1", "elsewhere:123", now=now)  # another host: judged by its heartbeats
    assert store.claim("k1", owner_id(), now=now + STALE_AFTER / 2) is None
    assert store.claim("k1", owner_id(), now=now + STALE_AFTER + 1) == "interrupted"


def test_transaction_rolls_back(tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")
    store.register(rows(1))
    with pytest.raises(RuntimeError):
        with store.transaction() as conn:
            conn.execute("UPDATE runs SET status = 'done' WHERE key = 'k0'")
            raise RuntimeError("crash inside the transaction")
    assert store.get("k0")["status"] == "pending"


def _worker(path: str, n: int, queue) -> None:
    store = ResultStore(path)
    won = []
    for i in range(n):
        key = f"k{i}"
        if store.claim(key, owner_id()) is not None:
            store.heartbeat(key, owner_id())
            store.record(key, "note", {"pid": owner_id()})
            assert store.finish(key, owner_id(), "done", 0.0, metrics={"by": owner_id()})
            won.append(key)
    queue.put(won)


def test_concurrent_writer_processes(tmp_path):
    """Four processes race for the same 60 runs: each run is claimed and finished exactly once, nothing is lost."""
    path = str(tmp_path / "s.sqlite")
    store = ResultStore(path)
    store.register(rows(60))
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_worker, args=(path, 60, queue)) for _ in range(4)]
    for w in workers:
        w.start()
    won = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    claimed = [k for keys in won for k in keys]
    assert sorted(claimed) == sorted(f"k{i}" for i in range(60)), "every run claimed exactly once"
    runs = store.runs()
    assert all(r["status"] == "done" and r["attempts"] == 1 for r in runs)
    # the winner recorded in each row is the process that claimed it
    winner = {k: i for i, keys in enumerate(won) for k in keys}
    owners = {r["key"]: r["metrics"]["by"] for r in runs}
    assert len({owners[k] for k in owners}) == sum(1 for keys in won if keys)
    assert all(owners[k] == owners[won[winner[k]][0]] for k in owners)
    assert len(store.events()) == 60 * 3  # claim, note, done per run: no event lost
