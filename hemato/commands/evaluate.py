"""``python -m hemato evaluate --model DIR --data PATH``: score a saved model on a dataset split."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from hemato.config import get_settings
from hemato.jobs import format_eta
from hemato.vision.evaluate import AUTO_SPLIT, evaluate_model, summary


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command."""
    cmd = sub.add_parser("evaluate", help="accuracy, per-class scores, confusion matrix and calibration of a model")
    cmd.add_argument("--model", type=Path, required=True, help="model folder (model.keras + model_card.json)")
    cmd.add_argument("--data", type=Path, required=True, help="dataset folder or CSV manifest")
    cmd.add_argument("--split-csv", type=Path, help="manifest with paths relative to --data")
    cmd.add_argument(
        "--split",
        default=AUTO_SPLIT,
        help="split to score: test/val/train, 'all', or 'auto' (default: test when the data has one, else all)",
    )
    cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    cmd.add_argument("--rows", action="store_true", help="with --json, include one row per image")
    cmd.add_argument("--no-cache", action="store_true", help="recompute even when a cached result exists")
    cmd.add_argument("--cache-dir", type=Path, help="result cache folder (default: HEMATO_HOME/cache)")
    cmd.set_defaults(handler=run)


def _progress_printer() -> Any:
    start = time.monotonic()

    def show(done: int, total: int) -> None:
        if not sys.stderr.isatty():
            return
        elapsed = time.monotonic() - start
        eta = elapsed / done * (total - done) if done else 0.0
        print(
            f"\r  {done}/{total} images, {format_eta(elapsed)} elapsed, ETA {format_eta(eta)}   ",
            end="",
            file=sys.stderr,
        )
        if done >= total:
            print(file=sys.stderr)

    return show


def print_summary(result: dict[str, Any]) -> None:
    """A readable report of an evaluation result."""
    data, model = result["data"], result["model"]
    split = data["split"] or "all images"
    print(f"Model {model['name']} ({model['backbone']}, {model['input_size']} px) on {data['name']} [{split}]")
    print(
        f"n={result['n']}  accuracy={result['accuracy']:.4f}  macro-F1={result['macro_f1']:.4f}  "
        f"balanced accuracy={result['balanced_accuracy']:.4f}  ECE={result['ece']:.4f}"
    )
    width = max(len(c) for c in result["per_class"])
    print(f"  {'class':<{width}}  precision  recall     f1  support")
    for label, s in result["per_class"].items():
        print(f"  {label:<{width}}  {s['precision']:9.3f}  {s['recall']:6.3f}  {s['f1']:5.3f}  {s['support']:7d}")
    labels = result["confusion_matrix"]["labels"]
    print("Confusion matrix (rows = true, columns = predicted):")
    print("  " + " " * width + "".join(f"{lab[:6]:>8}" for lab in labels))
    for label, row in zip(labels, result["confusion_matrix"]["matrix"], strict=True):
        print(f"  {label:<{width}}" + "".join(f"{v:>8d}" for v in row))
    if result["skipped"]:
        counts = ", ".join(f"{k} {v}" for k, v in result["skipped"].items())
        print(f"Skipped (labels the model does not know): {counts}")
    if result["unreadable"]:
        print(f"Unreadable images: {len(result['unreadable'])}")
    source = "cached result" if result.get("cached") else f"computed in {result['seconds']:.1f} s"
    print(f"({source})")


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the result."""
    cache_dir = args.cache_dir or get_settings().cache_dir
    result = evaluate_model(
        args.model, args.data, args.split_csv, args.split, cache_dir, _progress_printer(), refresh=args.no_cache
    )
    if args.json:
        print(json.dumps(result if args.rows else summary(result), indent=2))
    else:
        print_summary(result)
    return 0
