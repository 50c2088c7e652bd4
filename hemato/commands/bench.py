"""``python -m hemato bench predict|train|explore|quiz``: speed measurements printed as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hemato.bench import bench_explore, bench_predict, bench_train
from hemato.ui.bench import bench_quiz


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench`` command group."""
    bench = sub.add_parser("bench", help="measure speed (prints JSON)")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    predict = bench_sub.add_parser("predict", help="single-image predict (fast path vs model.predict) and Grad-CAM")
    predict.add_argument("--model", type=Path, help="trained model to use for its backbone")
    predict.add_argument("-n", type=int, default=30, help="timed repetitions")
    predict.add_argument("--backbones", nargs="+", default=["mobilenet_v2", "vgg16"])
    predict.set_defaults(handler=run_bench_predict)
    train = bench_sub.add_parser("train", help="feature extraction, head epochs, first curve point, default build")
    train.add_argument("--data", help="dataset (default: the configured one)")
    train.add_argument("--split-csv", help="manifest with paths relative to --data")
    train.add_argument("--backbones", nargs="+", default=["mobilenet_v2", "vgg16"])
    train.add_argument("--full", action="store_true", help="also build the default model from nothing (minutes)")
    train.set_defaults(handler=run_bench_train)
    explore = bench_sub.add_parser("explore", help="explorer cache build (cold) and warm load")
    explore.add_argument("--data", type=Path, help="dataset (default: the configured one)")
    explore.set_defaults(handler=run_bench_explore)
    quiz = bench_sub.add_parser("quiz", help="quiz first-feedback latency through the real page (AppTest)")
    quiz.add_argument("--think", type=float, default=5.0, help="seconds the student looks before answering")
    quiz.add_argument("--backbone", default="mobilenet_v2")
    quiz.set_defaults(handler=run_bench_quiz)


def run_bench_predict(args: argparse.Namespace) -> int:
    """Print :func:`hemato.vision.predict.bench_predict` results."""
    print(json.dumps(bench_predict(args.model, args.n, args.backbones), indent=2))
    return 0


def run_bench_train(args: argparse.Namespace) -> int:
    """Print :func:`hemato.bench.bench_train` results."""
    result = bench_train(args.data, args.split_csv, tuple(args.backbones), full=args.full)
    print(json.dumps(result, indent=2))
    return 0


def run_bench_quiz(args: argparse.Namespace) -> int:
    """Print :func:`hemato.ui.bench.bench_quiz` results."""
    print(json.dumps(bench_quiz(args.think, args.backbone), indent=2))
    return 0


def run_bench_explore(args: argparse.Namespace) -> int:
    """Print :func:`hemato.data.explore.bench_explore` results."""
    print(json.dumps(bench_explore(args.data), indent=2))
    return 0
