"""``python -m hemato export --model M --format tflite``: a TFLite file checked against the Keras model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hemato.config import get_settings
from hemato.data.datasets import discover_dataset, load_images
from hemato.vision.export import FORMATS, TFLITE_FILE, check_agreement, export_tflite
from hemato.vision.models import load_model


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` command."""
    parser = sub.add_parser("export", help="export a model for deployment (TFLite)")
    parser.add_argument("--model", type=Path, help="model folder (default: the default model)")
    parser.add_argument("--format", choices=FORMATS, default="tflite")
    parser.add_argument("--out", type=Path, help=f"output file (default: MODEL/{TFLITE_FILE})")
    parser.add_argument("--check", type=Path, help="dataset folder to check Keras/TFLite agreement on")
    parser.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Export, optionally check agreement (exit 1 below 99 %), print a JSON summary."""
    model_dir = args.model or get_settings().default_model_dir
    model, card = load_model(model_dir)
    out = args.out or Path(model_dir) / TFLITE_FILE
    if out.suffix.lower() != ".tflite":
        raise ValueError(f"--out must end in .tflite, got {out.name!r}.")
    path = export_tflite(model, out)
    summary: dict = {"format": args.format, "path": str(path), "bytes": path.stat().st_size}
    code = 0
    if args.check:
        images = load_images(discover_dataset(args.check).frame["path"].tolist(), card.input_size)
        agreement = check_agreement(model, path, images)
        summary["agreement"] = agreement.to_dict()
        code = 0 if agreement.agreement >= 0.99 else 1
    print(json.dumps(summary, indent=2))
    return code
