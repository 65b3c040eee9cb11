"""The results store: one SQLite file holding every run's status, metrics and paths.

Safe with concurrent writers - the local executor's worker threads and Ray tasks
on other processes all write into the same file: WAL journal (readers never
block the writer), a busy timeout, and every write in its own ``BEGIN
IMMEDIATE`` transaction, so a claim (pending -> running) is atomic and two
workers never start the same run. A short-lived connection per operation keeps
the store usable from threads and forked processes alike. (WAL needs a local
or otherwise lock-correct filesystem; on NFS-style cluster storage put the
store on a node-local disk reachable by all tasks, or use a shared POSIX FS.)

Statuses: ``pending`` (registered, never started), ``running`` (claimed by an
owner that sends heartbeats), ``done``, ``failed``. A ``running`` row whose owner
is gone (same host and its process is dead, or no heartbeat for
:data:`STALE_AFTER` seconds) counts as interrupted and can be claimed again;
the ``events`` table keeps the history (start, resume, done, failed), and under the empty key
(:data:`GRID`, no run's) each grid invocation's summary, which ``--report-only`` shows again.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

HEARTBEAT_EVERY = 10.0
STALE_AFTER = 90.0
STATUSES = ("pending", "running", "done", "failed")
GRID = ""  # the events key of whole-grid events: run keys are hashes, never empty
INVOCATION = "invocation"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    dataset TEXT, rule TEXT, arch TEXT, seed INTEGER,
    variant TEXT NOT NULL DEFAULT '{}',
    config TEXT NOT NULL,
    deps TEXT NOT NULL DEFAULT '[]',
    run_dir TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT, heartbeat REAL, started REAL, finished REAL, seconds REAL,
    metrics TEXT, paths TEXT, error TEXT, command TEXT
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL, time REAL NOT NULL, event TEXT NOT NULL, detail TEXT
);
"""


def owner_id() -> str:
    """``host:pid`` of the calling process (who holds a claimed run)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: Optional[str]) -> bool:
    """False when ``owner`` ran on this host and its process is gone; True when unknown (other host)."""
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


class ResultStore:
    """SQLite results store (see the module docstring).

    Args:
        path: the database file (created with its folder when missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``: takes the write lock up front), committed on success."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # ------------------------------------------------------------------ writes
    def register(self, rows: Sequence[dict]) -> None:
        """Add runs (``key, kind, name, dataset, rule, arch, seed, variant, config, deps, run_dir``) not yet known."""
        with self.transaction() as conn:
            for row in rows:
                conn.execute(
                    "INSERT OR IGNORE INTO runs (key, kind, name, dataset, rule, arch, seed, variant, config, deps, run_dir)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (row["key"], row["kind"], row["name"], row["dataset"], row["rule"], row["arch"], row["seed"],
                     json.dumps(row.get("variant", {})), json.dumps(row["config"]), json.dumps(list(row.get("deps", ()))),
                     str(row["run_dir"])),
                )

    def claim(self, key: str, owner: str, now: Optional[float] = None) -> Optional[str]:
        """Atomically mark ``key`` running for ``owner``; returns its previous status, or None if not claimable.

        Claimable: pending, failed, or running with a dead/silent owner (interrupted).
        """
        now = time.time() if now is None else now
        with self.transaction() as conn:
            row = conn.execute("SELECT status, owner, heartbeat FROM runs WHERE key = ?", (key,)).fetchone()
            if row is None or row["status"] == "done":
                return None
            previous = row["status"]
            if previous == "running":
                silent = row["heartbeat"] is None or now - row["heartbeat"] > STALE_AFTER
                if _owner_alive(row["owner"]) and not silent:
                    return None
                previous = "interrupted"
            conn.execute(
                "UPDATE runs SET status = 'running', owner = ?, heartbeat = ?, started = ?, attempts = attempts + 1,"
                " error = NULL WHERE key = ?",
                (owner, now, now, key),
            )
            conn.execute("INSERT INTO events (key, time, event, detail) VALUES (?, ?, 'claim', ?)",
                         (key, now, json.dumps({"owner": owner, "previous": previous})))
            return previous

    def heartbeat(self, key: str, owner: str) -> None:
        """Tell other claimers the run is still alive."""
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET heartbeat = ? WHERE key = ? AND owner = ?", (time.time(), key, owner))

    def record(self, key: str, event: str, detail: Any = None, **fields: Any) -> None:
        """Append an event and update columns of the run in one transaction (JSON-encodes dicts/lists)."""
        now = time.time()
        with self.transaction() as conn:
            if fields:
                values = [json.dumps(v) if isinstance(v, (dict, list)) else v for v in fields.values()]
                conn.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in fields)} WHERE key = ?", (*values, key))
            conn.execute("INSERT INTO events (key, time, event, detail) VALUES (?, ?, ?, ?)",
                         (key, now, event, json.dumps(detail) if detail is not None else None))

    def finish(self, key: str, owner: str, status: str, seconds: float, metrics: Optional[dict] = None,
               paths: Optional[dict] = None, error: Optional[str] = None) -> bool:
        """Set the final status of a run claimed by ``owner`` (False if someone else holds it now)."""
        if status not in ("done", "failed"):
            raise ValueError(f"finish() takes done or failed, not {status!r}")
        now = time.time()
        with self.transaction() as conn:
            updated = conn.execute(
                "UPDATE runs SET status = ?, finished = ?, seconds = ?, metrics = ?, paths = ?, error = ?, heartbeat = ?"
                " WHERE key = ? AND owner = ? AND status = 'running'",
                (status, now, seconds, json.dumps(metrics or {}), json.dumps(paths or {}), error, now, key, owner),
            ).rowcount
            conn.execute("INSERT INTO events (key, time, event, detail) VALUES (?, ?, ?, ?)",
                         (key, now, status, json.dumps({"seconds": seconds, "error": error})))
        return updated == 1

    def fail_unstarted(self, key: str, error: str) -> None:
        """Mark a pending run failed without running it (e.g. a dependency failed)."""
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET status = 'failed', error = ? WHERE key = ? AND status != 'done'", (error, key))
            conn.execute("INSERT INTO events (key, time, event, detail) VALUES (?, ?, 'failed', ?)",
                         (key, time.time(), json.dumps({"error": error})))

    def record_invocation(self, summary: dict) -> None:
        """Keep a grid invocation's counts (total, earlier, done, failed) and wall time (``seconds``) for later reports;
        the per-run results in ``summary`` are in the runs' rows already."""
        self.record(GRID, INVOCATION, {k: summary[k] for k in ("total", "earlier", "done", "failed", "seconds")})

    # ------------------------------------------------------------------- reads
    def last_invocation(self) -> Optional[dict]:
        """The summary of the last grid invocation, or None before the first."""
        with self._connect() as conn:
            row = conn.execute("SELECT detail FROM events WHERE key = ? AND event = ? ORDER BY id DESC LIMIT 1",
                               (GRID, INVOCATION)).fetchone()
        return json.loads(row["detail"]) if row else None

    def get(self, key: str) -> Optional[dict]:
        """The run as a dict (JSON columns decoded), or None."""
        rows = self.runs([key])
        return rows[0] if rows else None

    def runs(self, keys: Optional[Sequence[str]] = None) -> list[dict]:
        """All runs, or those with the given keys (in that order)."""
        with self._connect() as conn:
            if keys is None:
                rows = conn.execute("SELECT * FROM runs ORDER BY rowid").fetchall()
            else:
                found = {r["key"]: r for r in conn.execute(
                    f"SELECT * FROM runs WHERE key IN ({','.join('?' * len(keys))})", list(keys)).fetchall()} if keys else {}
                rows = [found[k] for k in keys if k in found]
        return [_decode(row) for row in rows]

    def events(self, key: Optional[str] = None) -> list[dict]:
        """The event history (of one run, or all), oldest first."""
        with self._connect() as conn:
            query = "SELECT * FROM events" + (" WHERE key = ?" if key else "") + " ORDER BY id"
            rows = conn.execute(query, (key,) if key else ()).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"]) if r["detail"] else None} for r in rows]


def _decode(row: sqlite3.Row) -> dict:
    out = dict(row)
    for column in ("variant", "config", "deps", "metrics", "paths"):
        if out.get(column):
            out[column] = json.loads(out[column])
    return out
