"""``python -m hemato predict --model M IMAGE…``: classify images from a terminal."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from hemato.config import get_settings
from hemato.data.imaging import ImageError, open_image
from hemato.vision.models import load_model
from hemato.vision.predict import Predictor


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``predict`` command."""
    parser = sub.add_parser("predict", help="classify images with a trained model")
    parser.add_argument("images", nargs="+", type=Path, help="image files (jpg, png, bmp, tif)")
    parser.add_argument("--model", type=Path, help="model folder (default: the default model)")
    parser.add_argument("--csv", action="store_true", help="print CSV: image, predicted class, confidence, per class")
    parser.set_defaults(handler=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    """Print one line (or CSV row) per image; unreadable images are reported and give exit code 1."""
    model_dir = args.model or get_settings().default_model_dir
    model, card = load_model(model_dir)
    predictor = Predictor(model, card.input_size)
    writer = csv.writer(sys.stdout) if args.csv else None
    if writer:
        writer.writerow(["image", "predicted", "confidence", *card.classes])
    failed = 0
    for path in args.images:
        try:
            image = open_image(path)
        except ImageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        probs = predictor.predict_one(image)
        best = int(probs.argmax())
        if writer:
            writer.writerow([str(path), card.classes[best], f"{probs[best]:.4f}", *(f"{p:.4f}" for p in probs)])
        else:
            print(f"{path}: {card.classes[best]} ({probs[best]:.1%})")
    return 1 if failed else 0
