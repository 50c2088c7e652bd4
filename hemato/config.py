"""Paths and settings resolved from the environment, with defaults that work offline here.

Nothing happens at import time: call :func:`get_settings` to read the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hemato.data.datasets import looks_like_dataset

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = PROJECT_ROOT.parent / "shared"

ENV_DATA_DIR = "HEMATO_DATA_DIR"
ENV_WEIGHTS_DIR = "HEMATO_WEIGHTS_DIR"
ENV_HOME = "HEMATO_HOME"
ENV_MODELS_DIR = "HEMATO_MODELS_DIR"
ENV_INSTRUCTOR_SECRET = "HEMATO_INSTRUCTOR_SECRET"

DEFAULT_MODEL_NAME = "default"


@dataclass(frozen=True)
class Settings:
    """Resolved locations of data, weights, models and the working home."""

    data_dir: Path | None
    weights_dir: Path | None
    home: Path
    models_dir: Path

    @property
    def runs_dir(self) -> Path:
        """Folder holding one sub-folder per training run."""
        return self.home / "runs"

    @property
    def cache_dir(self) -> Path:
        """Folder for on-disk caches (features, thumbnails, metrics)."""
        return self.home / "cache"

    @property
    def db_path(self) -> Path:
        """SQLite database for runs, quiz sets and answers."""
        return self.home / "hemato.sqlite3"

    @property
    def default_model_dir(self) -> Path:
        """Where the README's run command builds the default model."""
        return self.models_dir / DEFAULT_MODEL_NAME

    def ensure_home(self) -> Path:
        """Create the home folder tree if needed and return it."""
        for path in (self.home, self.runs_dir, self.cache_dir):
            path.mkdir(parents=True, exist_ok=True)
        return self.home


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser().resolve() if value else None


def _default_data_dir() -> Path | None:
    # Imported here so config stays free of heavier imports for callers that only need paths.

    local = PROJECT_ROOT / "data"
    if looks_like_dataset(local):
        return local
    shared = SHARED_DIR / "data" / "pbc"
    return shared if shared.is_dir() else None


def _default_weights_dir() -> Path | None:
    shared = SHARED_DIR / "weights"
    return shared if shared.is_dir() else None


def get_settings() -> Settings:
    """Read settings from the environment, falling back to the project's defaults."""
    return Settings(
        data_dir=_env_path(ENV_DATA_DIR) or _default_data_dir(),
        weights_dir=_env_path(ENV_WEIGHTS_DIR) or _default_weights_dir(),
        home=_env_path(ENV_HOME) or PROJECT_ROOT / ".hemato",
        models_dir=_env_path(ENV_MODELS_DIR) or PROJECT_ROOT / "models",
    )
