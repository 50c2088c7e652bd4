"""What the app has to work with: dataset, offline weights, trained models. No TensorFlow import."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hemato.config import SHARED_DIR, Settings
from hemato.data.datasets import DatasetError, discover_dataset, looks_like_dataset
from hemato.vision.models import BACKBONES, MODEL_FILE, ModelCard, list_models, local_weights_path


@dataclass
class DatasetStatus:
    """Summary of the configured dataset."""

    path: Path | None
    name: str = ""
    classes: list[str] = field(default_factory=list)
    n_images: int = 0
    n_excluded: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    error: str = ""


@dataclass
class WeightsStatus:
    """ImageNet weights availability for one backbone."""

    backbone: str
    label: str
    local_file: Path | None
    needs_weights: bool


@dataclass
class AppStatus:
    """Everything the Home page's status panel shows."""

    dataset: DatasetStatus
    weights: list[WeightsStatus]
    models: list[tuple[Path, ModelCard | None]]
    default_model: Path


def dataset_status(path: Path | None) -> DatasetStatus:
    """Count the images of the dataset at ``path`` (no decoding), or say why it cannot be used."""
    if path is None:
        return DatasetStatus(
            None, error="No dataset found: put one in data/ or set HEMATO_DATA_DIR to a dataset folder."
        )
    try:
        ds = discover_dataset(path)
    except (DatasetError, OSError) as exc:
        return DatasetStatus(path, error=str(exc))
    splits = {s: int((ds.frame["split"] == s).sum()) for s in ds.splits}
    return DatasetStatus(path, ds.name, ds.classes, ds.n_files, ds.excluded, splits)


def known_datasets(data_dir: Path | None, shared_data: Path | None = None) -> list[tuple[str, Path]]:
    """Datasets to offer in pickers as (name, folder): the configured one first, then those in ``shared_data``.

    Args:
        data_dir: The configured dataset (``settings.data_dir``), if any.
        shared_data: A folder of datasets (default: ``../shared/data``).
    """
    shared_data = Path(shared_data) if shared_data else SHARED_DIR / "data"
    found: list[tuple[str, Path]] = []
    if data_dir is not None:
        found.append((Path(data_dir).name, Path(data_dir).resolve()))
    if shared_data.is_dir():
        for sub in sorted(p for p in shared_data.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if sub.resolve() not in {path for _, path in found} and looks_like_dataset(sub):
                found.append((sub.name, sub.resolve()))
    return found


def available_models(settings: Settings) -> list[tuple[str, Path]]:
    """Loadable models as (label, folder): the default first, then other saved models, then finished runs."""
    found: list[tuple[str, Path]] = []
    for root, prefix in ((settings.models_dir, ""), (settings.runs_dir, "run ")):
        for path, card in list_models(root):
            if card is not None and (path / MODEL_FILE).is_file():
                found.append((f"{prefix}{path.name} ({card.backbone})", path))
    found.sort(key=lambda item: item[1] != settings.default_model_dir)
    return found


def collect_status(settings: Settings) -> AppStatus:
    """Gather the dataset, weights and model status for ``settings``."""
    weights = [
        WeightsStatus(key, spec.label, local_weights_path(key, settings.weights_dir), spec.weights_file is not None)
        for key, spec in BACKBONES.items()
    ]
    return AppStatus(
        dataset=dataset_status(settings.data_dir),
        weights=weights,
        models=list_models(settings.models_dir),
        default_model=settings.default_model_dir,
    )


CROSS_LAB_FOLDER = "bccd_wbc_crops"


def dataset_options(data_dir: Path | None, shared_data: Path | None = None) -> list[tuple[str, Path]]:
    """Datasets to offer for evaluation: the configured one first, then the folders beside it in ``shared_data``.

    Args:
        data_dir: The configured dataset (settings.data_dir), if any.
        shared_data: A folder of datasets (default: ``../shared/data``).

    Returns:
        ``(label, path)`` pairs without duplicates.
    """
    options: list[tuple[str, Path]] = []
    for i, (name, path) in enumerate(known_datasets(data_dir, shared_data)):
        if i == 0 and data_dir is not None:
            options.append((f"{name} (configured dataset)", path))
        else:
            note = " (another lab: cross-lab check)" if name == CROSS_LAB_FOLDER else ""
            options.append((f"{name}{note}", path))
    return options


def cross_lab_path(shared_data: Path | None = None) -> Path | None:
    """The second-lab dataset (BCCD crops) when present."""
    path = (Path(shared_data) if shared_data else SHARED_DIR / "data") / CROSS_LAB_FOLDER
    return path if path.is_dir() else None
