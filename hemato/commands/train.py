"""``python -m hemato train`` and ``python -m hemato default-model``: training from a terminal."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

from hemato import jobs
from hemato.config import get_settings
from hemato.training.runs import get_run, refresh_run, submit_run
from hemato.training.train import TrainConfig, default_model_config
from hemato.vision.models import BACKBONES, MODEL_FILE, ModelLoadError, read_card


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` and ``default-model`` commands."""
    defaults = TrainConfig(data="")
    train = sub.add_parser("train", help="train a model (same run folder as the Train page)")
    train.add_argument("--data", required=True, help="dataset folder or CSV manifest")
    train.add_argument("--split-csv", help="manifest with paths relative to --data")
    train.add_argument("--backbone", choices=list(BACKBONES), default=defaults.backbone)
    train.add_argument("--input-size", type=int, help="square input side (default: the backbone's)")
    train.add_argument("--epochs", type=int, default=defaults.epochs, help="head epochs (or all epochs from scratch)")
    train.add_argument("--fine-tune-epochs", type=int, default=defaults.fine_tune_epochs)
    train.add_argument("--fine-tune-layers", type=int, default=defaults.fine_tune_layers)
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    train.add_argument("--fine-tune-learning-rate", type=float, default=defaults.fine_tune_learning_rate)
    train.add_argument("--augment", default=defaults.augment, help="augmentation preset")
    train.add_argument("--no-class-weights", dest="class_weighting", action="store_false")
    train.add_argument("--patience", type=int, default=defaults.patience)
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--max-per-class", type=int, help="use at most this many images per class (quick runs)")
    train.add_argument("--random-init", action="store_true", help="no ImageNet weights")
    train.add_argument("--out", help="also copy the finished model to this folder, e.g. models/NAME")
    train.set_defaults(handler=run_train)

    default = sub.add_parser("default-model", help="build models/default (MobileNetV2 on the configured data)")
    default.add_argument("--if-missing", action="store_true", help="do nothing when the default model exists")
    default.add_argument("--data", help="dataset (default: HEMATO_DATA_DIR / data/ / ../shared/data/pbc)")
    default.set_defaults(handler=run_default)


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    values: dict[str, Any] = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if args.random_init:
        values["weights"] = None
    values["data"] = str(Path(args.data).expanduser().resolve())
    if args.out:
        values["out"] = str(Path(args.out).expanduser().resolve())
    return TrainConfig(**values)


def _progress_bar() -> Any:
    """A callback drawing a job's progress as one tqdm bar per phase (units as the job reports them)."""
    from tqdm import tqdm

    bar = tqdm(total=1, dynamic_ncols=True, leave=False)
    shown: dict[str, Any] = {"signature": None}

    def show(job: jobs.Job) -> None:
        signature = (job.unit, job.total)
        if signature != shown["signature"]:
            shown["signature"] = signature
            bar.reset(total=int(job.total or 1))
            bar.unit = job.unit or "it"
        bar.set_description(job.phase, refresh=False)
        if job.total:
            bar.update(max(0, int(job.done or 0) - bar.n))
        bar.refresh()
        if not job.active:
            bar.close()

    return show


def _train_with_progress(config: TrainConfig) -> int:
    run = submit_run(config)
    print(f"Run {run.id}: {run.path}")
    if run.status == "queued":
        print("Queued on the job worker (one heavy job at a time); Ctrl-C stops the run and keeps its best model.")
    show = _progress_bar()
    try:
        jobs.wait(run.job_id, timeout=float("inf"), on_update=show)
    except KeyboardInterrupt:
        print("\nStopping after the current batch…")
        jobs.cancel(run.job_id)
        jobs.wait(run.job_id, timeout=float("inf"), on_update=show)
    run = refresh_run(get_run(run.id))
    print(f"Run {run.id} {run.status}." + (f" {run.message}" if run.message else ""))
    if run.test_accuracy is not None:
        print(f"Test accuracy {run.test_accuracy:.4f}")
    if config.out and run.status in ("done", "stopped") and (Path(config.out) / MODEL_FILE).exists():
        print(f"Model copied to {config.out}")
    return 0 if run.status in ("done", "stopped") else 1


def run_train(args: argparse.Namespace) -> int:
    """Train on the job worker and follow it with a progress bar; the run is also listed on the Train page."""
    return _train_with_progress(_config_from_args(args))


def run_default(args: argparse.Namespace) -> int:
    """Build the default model unless it already exists (with --if-missing)."""
    settings = get_settings()
    target = settings.default_model_dir
    if args.if_missing and (target / MODEL_FILE).is_file():
        try:
            card = read_card(target)
            print(f"Default model present: {target} ({card.backbone}, {len(card.classes)} classes).")
            return 0
        except ModelLoadError as exc:
            print(f"Default model card is damaged ({exc}); rebuilding.")
    data = args.data or (str(settings.data_dir) if settings.data_dir else None)
    if data is None:
        print("No dataset found: put one in data/ or set HEMATO_DATA_DIR, then run this again.")
        return 1
    print(f"Building the default model from {data} into {target} (a few minutes on a laptop CPU)…")
    return _train_with_progress(default_model_config(data))
