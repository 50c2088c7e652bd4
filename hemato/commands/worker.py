"""``python -m hemato worker``: run this machine's job worker (a heavy and a light queue of hemato.jobs)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

from hemato import jobs

# Job kinds are functions decorated with hemato.jobs.job anywhere in these packages: importing every module
# registers them all, so a new kind needs no list to be kept here.
CORE_PACKAGES = ("hemato.data", "hemato.vision", "hemato.training", "hemato.teaching", "hemato.smear")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``worker`` command."""
    cmd = sub.add_parser("worker", help="run background jobs (training, evaluation, exports, explanations)")
    cmd.add_argument("--idle-exit", type=float, help="exit after this many seconds without queued or running jobs")
    cmd.set_defaults(handler=run)


def load_job_kinds() -> list[str]:
    """Import every module of the core packages (registering their job kinds); return the kind names."""
    for name in CORE_PACKAGES:
        try:
            package = importlib.import_module(name)
        except ModuleNotFoundError:
            continue  # a package that does not exist (yet) in this checkout
        for module in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            importlib.import_module(module.name)
    return sorted(jobs.KINDS)


def run(args: argparse.Namespace) -> int:
    """Load the job kinds and run the worker until stopped."""
    kinds = load_job_kinds()
    print(f"hemato worker: job kinds {', '.join(kinds)}", flush=True)
    return jobs.run_worker(args.idle_exit)
