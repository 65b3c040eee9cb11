"""Running a grid: executors (local worker threads or Ray tasks) and the loop that feeds them.

Every job is run by :func:`lightning_local.benchmark.runner.execute`, which claims
it in the results store, so the driver only decides *when* a job may start (its
dependencies are done and a slot is free) and prints progress. Finished runs
(``done`` in the store) are skipped; interrupted ones resume from their last
checkpoint; failed ones are retried.
"""

from __future__ import annotations

import concurrent.futures as futures
import os
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from .runner import checkpoint_epoch, execute, last_checkpoint, terminate_children
from .spec import Job, SpecError
from .store import ResultStore


def cpu_count() -> int:
    """CPU cores this process may use: its affinity, capped by ``OMP_NUM_THREADS`` when a parent set a budget
    (a benchmark's tune job runs its trials within the threads the benchmark gave it)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    budget = os.environ.get("OMP_NUM_THREADS", "")
    return min(cores, int(budget)) if budget.isdigit() and int(budget) > 0 else cores


class LocalExecutor:
    """Runs jobs (benchmark runs, tuning trials) as subprocesses on this machine, ``workers`` at a time.

    ``accelerator="cpu"``: each run gets ``cores // workers`` torch threads.
    ``accelerator="gpu"``: one run per GPU - worker ``i`` sees only GPU ``i``
    (``CUDA_VISIBLE_DEVICES``); ``workers`` defaults to the number of GPUs.
    """

    def __init__(self, workers: Optional[int] = None, accelerator: str = "cpu") -> None:
        if accelerator not in ("cpu", "gpu"):
            raise SpecError(f"accelerator must be cpu or gpu (got {accelerator!r}).")
        gpus = 0
        if accelerator == "gpu":
            import torch

            gpus = torch.cuda.device_count()
            if gpus == 0:
                raise SpecError("--accelerator gpu but torch sees no GPU: use --accelerator cpu.")
        self.accelerator = accelerator
        self.capacity = workers or gpus or 1
        if self.capacity < 1:
            raise SpecError(f"--workers must be at least 1 (got {workers}).")
        self.threads = max(1, cpu_count() // self.capacity)
        self._gpus = gpus
        self._slots: queue.Queue[int] = queue.Queue()
        for slot in range(self.capacity):
            self._slots.put(slot)
        self._pool = futures.ThreadPoolExecutor(max_workers=self.capacity, thread_name_prefix="benchmark")

    def describe(self) -> str:
        if self.accelerator == "gpu":
            return f"{self.capacity} local worker(s), one GPU each ({self._gpus} GPU(s))"
        return f"{self.capacity} local CPU worker(s), {self.threads} thread(s) each"

    def submit(self, function: Callable[..., dict], *args: Any) -> futures.Future:
        """Run ``function(*args, threads=, accelerator=, env=)`` in a free slot (e.g. :func:`execute`)."""
        return self._pool.submit(self._run, function, args)

    def _run(self, function: Callable[..., dict], args: tuple) -> dict:
        slot = self._slots.get()
        try:
            env = {"CUDA_VISIBLE_DEVICES": str(slot % self._gpus)} if self.accelerator == "gpu" else {"CUDA_VISIBLE_DEVICES": ""}
            return function(*args, threads=self.threads, accelerator=self.accelerator, env=env)
        finally:
            self._slots.put(slot)

    def wait(self, handles: list) -> list:
        done, _ = futures.wait(handles, return_when=futures.FIRST_COMPLETED)
        return [(handle, handle.result()) for handle in done]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Runs each job (a benchmark run, a tuning trial) as a Ray task with a resource request (``num_cpus``, ``num_gpus``).

    Connects to ``address`` (``"auto"``: a running cluster, ``None``: a new local
    instance). Tasks write into the same results store, so the store (and the run
    folders) must be on a filesystem every node sees.
    """

    def __init__(self, address: Optional[str] = None, num_cpus: float = 1, num_gpus: float = 0,
                 local_cpus: Optional[int] = None) -> None:
        try:
            import ray
        except ImportError:
            raise SpecError('--executor ray needs Ray: pip install "lightning-local[ray]"') from None
        self._ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None and local_cpus is not None:
                kwargs["num_cpus"] = local_cpus
            ray.init(address=address, **kwargs)
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        resources = ray.cluster_resources()
        fits = [resources.get("CPU", 1) / max(num_cpus, 1e-9)]
        if num_gpus:
            fits.append(resources.get("GPU", 0) / num_gpus)
        self.capacity = max(1, int(min(fits)))
        self._task = ray.remote(_ray_call).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)

    def describe(self) -> str:
        return f"Ray ({self.capacity} task(s) at once, {self.num_cpus:g} CPU / {self.num_gpus:g} GPU each)"

    def submit(self, function: Callable[..., dict], *args: Any) -> Any:
        """Run ``function(*args, threads=, accelerator=)`` as a Ray task (e.g. :func:`execute`)."""
        return self._task.remote(function, args, max(1, int(self.num_cpus)), "gpu" if self.num_gpus else "cpu")

    def wait(self, handles: list) -> list:
        ready, _ = self._ray.wait(handles, num_returns=1)
        return [(handle, self._ray.get(handle)) for handle in ready]

    def shutdown(self) -> None:
        pass


def _ray_call(function: Callable[..., dict], args: tuple, threads: int, accelerator: str) -> dict:
    """Ray task body (Ray sets ``CUDA_VISIBLE_DEVICES`` for GPU requests)."""
    return function(*args, threads=threads, accelerator=accelerator)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _outcome(job: Job, result: dict) -> str:
    metrics = result.get("metrics") or {}
    if result["status"] != "done":
        return f"{result['status'].upper()} ({result.get('error', '')[:300]})"
    if "backdoor" in metrics:
        bd = metrics["backdoor"]
        return f"clean acc {bd['clean_accuracy']:.3f}, ASR {bd['attack_success_rate']:.3f}"
    if job.kind == "cka":
        return f"{len(metrics.get('cka', []))} CKA entries"
    if job.kind == "tune":
        return f"best val_acc {metrics['best_val_acc']:.3f} (trial {metrics['trial']} of {metrics['trials']})"
    return f"test_acc {metrics.get('test_acc', float('nan')):.3f}"


def run_grid(jobs: list[Job], store: ResultStore, executor: Any, log: Callable[[str], None] = print,
             poll: float = 5.0) -> dict:
    """Run every job not yet done, dependencies first; returns counts and this session's results."""
    status = {row["key"]: row["status"] for row in store.runs([j.key for j in jobs])}
    total = len(jobs)
    earlier = sum(status[j.key] == "done" for j in jobs)
    todo = [j for j in jobs if status[j.key] != "done"]
    log(f"benchmark: {total} runs, {earlier} already done, {len(todo)} to run on {executor.describe()}")
    in_flight: dict[Any, tuple[Job, float]] = {}
    durations: list[float] = []
    results: dict[str, dict] = {}
    counter = {"done": earlier, "failed": 0}
    started = time.time()

    def progress() -> str:
        left = len(todo) + len(in_flight)
        eta = ""
        if durations and left:
            width = min(executor.capacity, left)
            eta = f" | ETA {_duration(sum(durations) / len(durations) * left / width)}"
        return (f"{counter['done']} done, {counter['failed']} failed, {len(in_flight)} running, {len(todo)} waiting"
                f"{eta}")

    try:
        while todo or in_flight:
            for job in list(todo):
                deps = [status.get(d) for d in job.deps]
                if "failed" in deps:
                    todo.remove(job)
                    store.fail_unstarted(job.key, "a run it compares failed")
                    status[job.key] = "failed"
                    counter["failed"] += 1
                    log(f"[{counter['done'] + counter['failed']}/{total}] skip  {job.name}: a run it needs failed")
                elif all(d == "done" for d in deps) and len(in_flight) < executor.capacity:
                    todo.remove(job)
                    resume = last_checkpoint(Path(store.get(job.key)["run_dir"])) if job.kind == "train" else None
                    epoch = checkpoint_epoch(resume) if resume else None
                    note = f" (resuming after epoch {epoch})" if epoch else ""
                    in_flight[executor.submit(execute, str(store.path), job.key)] = (job, time.time())
                    log(f"[{len(in_flight) + counter['done'] + counter['failed']}/{total}] start {job.name}{note}")
            if not in_flight:
                if todo:  # dependencies are held by another benchmark process: wait for them
                    time.sleep(poll)
                    status.update({r["key"]: r["status"] for r in store.runs([d for j in todo for d in j.deps])})
                continue
            for handle, result in executor.wait(list(in_flight)):
                job, _ = in_flight.pop(handle)
                results[job.key] = result
                if result["status"] == "skipped":  # claimed by another benchmark process meanwhile
                    status[job.key] = store.get(job.key)["status"]
                    if status[job.key] not in ("done", "failed"):
                        todo.append(job)
                        time.sleep(poll)
                    log(f"[{counter['done'] + counter['failed']}/{total}] other {job.name}: run by another process")
                    continue
                status[job.key] = result["status"]
                counter["done" if result["status"] == "done" else "failed"] += 1
                if "seconds" in result:
                    durations.append(result["seconds"])
                took = f" in {_duration(result.get('seconds', 0))}"
                log(f"[{counter['done'] + counter['failed']}/{total}] end   {job.name}: {_outcome(job, result)}{took} | {progress()}")
    except KeyboardInterrupt:
        log("benchmark: interrupted - ending the runs in flight; rerun the same command to resume them")
        terminate_children()
        raise
    finally:
        executor.shutdown()
    return {"total": total, "earlier": earlier, "done": counter["done"], "failed": counter["failed"],
            "seconds": time.time() - started, "results": results}
