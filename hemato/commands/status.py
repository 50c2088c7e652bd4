"""``python -m hemato status``: the Home page's status panel, in a terminal."""

from __future__ import annotations

import argparse

from hemato.config import get_settings
from hemato.status import collect_status


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``status`` command."""
    sub.add_parser("status", help="show the dataset, weights and models found").set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print what the app has to work with."""
    settings = get_settings()
    status = collect_status(settings)
    ds = status.dataset
    if ds.error:
        print(f"Dataset: {ds.error}")
    else:
        print(f"Dataset: {ds.name} at {ds.path}: {ds.n_images} images, classes {', '.join(ds.classes)}")
    for w in status.weights:
        if w.needs_weights:
            where = w.local_file or "not found offline (Keras will try to download)"
            print(f"Weights {w.backbone}: {where}")
    print(f"Models in {settings.models_dir}: {len(status.models)}")
    for path, card in status.models:
        print(f"  {path.name}: {card.backbone if card else 'damaged model card'}")
    return 0
