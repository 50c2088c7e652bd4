"""``python -m hemato explain --model M IMAGE --method gradcam --out heatmap.png``: a saliency map as a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from hemato.config import get_settings
from hemato.data.imaging import IMAGE_EXTENSIONS, load_array
from hemato.vision.explain import COLORMAPS, METHODS, explain, overlay
from hemato.vision.models import load_model
from hemato.vision.predict import Predictor


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``explain`` command."""
    parser = sub.add_parser("explain", help="write a saliency heatmap (overlay) for one image")
    parser.add_argument("image", type=Path, help="image file")
    parser.add_argument("--model", type=Path, help="model folder (default: the default model)")
    parser.add_argument("--method", choices=list(METHODS), default="gradcam")
    parser.add_argument("--target", help="class name or index to explain (default: the predicted class)")
    parser.add_argument("--layer", help="layer for CAM methods (default: the last convolution)")
    parser.add_argument("--out", type=Path, required=True, help="output PNG")
    parser.add_argument("--raw", action="store_true", help="write the grey heatmap instead of the overlay")
    parser.add_argument("--alpha", type=float, default=0.45, help="overlay opacity")
    parser.add_argument("--colormap", choices=COLORMAPS, default="jet")
    parser.set_defaults(handler=run_explain)


def target_index(target: str | None, classes: list[str]) -> int | None:
    """A class given by name (any case) or index, as an index; None stays None."""
    if target is None:
        return None
    if target.isdigit():
        index = int(target)
        if index >= len(classes):
            raise ValueError(f"Class index {index} is out of range; classes: {', '.join(classes)}.")
        return index
    lowered = [c.lower() for c in classes]
    if target.lower() not in lowered:
        raise ValueError(f"Unknown class {target!r}; classes: {', '.join(classes)}.")
    return lowered.index(target.lower())


def run_explain(args: argparse.Namespace) -> int:
    """Compute the heatmap and write it; print the explained class."""
    if args.out.suffix.lower() not in IMAGE_EXTENSIONS:
        raise ValueError(f"--out must be an image file name (.png, .jpg, …), got {args.out.name!r}.")
    image = load_array(args.image)  # refuses unusable images before anything is written
    model, card = load_model(args.model or get_settings().default_model_dir)
    target = target_index(args.target, card.classes)
    heatmap = explain(model, image, args.method, target, args.layer)
    if target is None:
        target = int(Predictor(model, card.input_size).predict_one(image).argmax())
    if args.raw:
        picture = (heatmap * 255).round().astype(np.uint8)
    else:
        picture = overlay(image, heatmap, args.alpha, args.colormap)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(args.out)
    print(f"{METHODS[args.method]} for {card.classes[target]} → {args.out}")
    return 0
