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
ENV_DATABASE_URL = "HEMATO_DATABASE_URL"
ENV_REDIS_URL = "HEMATO_REDIS_URL"
ENV_WORKER = "HEMATO_WORKER"
ENV_HEAVY_SLOTS = "HEMATO_HEAVY_SLOTS"
ENV_LIGHT_SLOTS = "HEMATO_LIGHT_SLOTS"
WORKER_MODES = ("auto", "external")

DEFAULT_MODEL_NAME = "default"


@dataclass(frozen=True)
class Settings:
    """Resolved locations of data, weights, models and the working home."""

    data_dir: Path | None
    weights_dir: Path | None
    home: Path
    models_dir: Path
    database_url: str = ""
    redis_url: str | None = None
    worker_mode: str = "auto"
    heavy_slots: int = 1
    light_slots: int = 1

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
        """The default SQLite database for runs, jobs, quiz sets and answers."""
        return self.home / "hemato.sqlite3"

    @property
    def db_url(self) -> str:
        """The database URL: ``HEMATO_DATABASE_URL``, else the SQLite file under the home."""
        return self.database_url or f"sqlite:///{self.db_path}"

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


def _env_slots(name: str) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return 1
    try:
        slots = int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a whole number; set it to 1 or more (or unset it).") from None
    if slots < 1:
        raise ValueError(f"{name}={slots} must be at least 1.")
    return slots


def _env_worker_mode() -> str:
    mode = os.environ.get(ENV_WORKER, "").strip().lower() or "auto"
    if mode not in WORKER_MODES:
        raise ValueError(f"{ENV_WORKER}={mode!r} is not one of {', '.join(WORKER_MODES)}.")
    return mode


def get_settings() -> Settings:
    """Read settings from the environment, falling back to the project's defaults.

    Raises:
        ValueError: A job setting (``HEMATO_WORKER``, ``HEMATO_HEAVY_SLOTS``, ``HEMATO_LIGHT_SLOTS``) is malformed.
    """
    return Settings(
        data_dir=_env_path(ENV_DATA_DIR) or _default_data_dir(),
        weights_dir=_env_path(ENV_WEIGHTS_DIR) or _default_weights_dir(),
        home=_env_path(ENV_HOME) or PROJECT_ROOT / ".hemato",
        models_dir=_env_path(ENV_MODELS_DIR) or PROJECT_ROOT / "models",
        database_url=os.environ.get(ENV_DATABASE_URL, "").strip(),
        redis_url=os.environ.get(ENV_REDIS_URL, "").strip() or None,
        worker_mode=_env_worker_mode(),
        heavy_slots=_env_slots(ENV_HEAVY_SLOTS),
        light_slots=_env_slots(ENV_LIGHT_SLOTS),
    )
