"""What the grid commands (``benchmark``, ``tune``) share: a parser with one-line errors and help, the executor flags."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

PROG = "lightning-local"


def summary(doc: str) -> str:
    """The one-line help of a command module: its docstring's first line without the leading command name.

    ``"``lightning-local tune``: hyper-parameter search ..."`` gives ``"Hyper-parameter search ..."``
    (what ``lightning-local --help`` lists next to the command).
    """
    first = doc.strip().splitlines()[0]
    if first.startswith(f"``{PROG} "):
        first = first.split("``:", 1)[-1].strip()
    return first[:1].upper() + first[1:]


class SubcommandParser(argparse.ArgumentParser):
    """argparse for ``lightning-local NAME``, its usage and examples from ``doc``; bad flags end in one line.

    Args:
        name: the subcommand.
        doc: the command module's docstring: first paragraph the description, the rest the epilog.
    """

    def __init__(self, name: str, doc: str) -> None:
        super().__init__(prog=f"{PROG} {name}", description=doc.split("\n\n")[0], epilog=doc.split("\n\n", 1)[1],
                         formatter_class=argparse.RawDescriptionHelpFormatter)
        self.name = name

    def error(self, message: str) -> NoReturn:
        print(f"{PROG}: error: {self.name}: {message} (see {PROG} {self.name} --help)", file=sys.stderr)
        raise SystemExit(2)


def add_executor_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``--executor``, ``--workers``, ``--accelerator``, ``--ray-address``, ``--ray-cpus`` (``what``: runs, trials)."""
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument("--workers", type=int, help=f"local: {what} at once (default: 1 on CPU, one per GPU)")
    parser.add_argument("--accelerator", choices=("cpu", "gpu", "auto"), default="auto",
                        help=f"local: where {what} train (auto: gpu when torch sees one)")
    parser.add_argument("--ray-address", default=None, help="ray: cluster address ('auto' = running cluster; "
                                                            "default: start a local instance)")
    parser.add_argument("--ray-cpus", type=int, default=None, help="ray: CPUs of a new local instance (default: all)")


def make_executor(options: argparse.Namespace, resources: dict) -> Any:
    """The benchmark's executor the flags ask for: Ray tasks with ``resources`` each, or local worker threads."""
    from lightning_local.benchmark.scheduler import LocalExecutor, RayExecutor

    if options.executor == "ray":
        return RayExecutor(options.ray_address, local_cpus=options.ray_cpus, **{"num_cpus": 1, "num_gpus": 0, **resources})
    accelerator = options.accelerator
    if accelerator == "auto":
        import torch

        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    return LocalExecutor(options.workers, accelerator)
