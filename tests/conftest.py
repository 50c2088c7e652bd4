"""Shared fixtures: the real pbc_mini images, an isolated HEMATO_HOME and a tiny trained model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hemato.config import PROJECT_ROOT, SHARED_DIR, get_settings
from tests.fixtures.servers import PostgresServer, start_postgres

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PBC_MINI = SHARED_DIR / "data" / "pbc_mini"
PBC = SHARED_DIR / "data" / "pbc"
BCCD = SHARED_DIR / "data" / "bccd_wbc_crops"
WEIGHTS_DIR = SHARED_DIR / "weights"
TINY_SIZE = 96


@pytest.fixture(scope="session")
def pbc_mini() -> Path:
    """The 80-image real fixture (20 per class)."""
    if not PBC_MINI.is_dir():
        pytest.fail(f"{PBC_MINI} is missing: tests need ../shared/data beside the project.")
    return PBC_MINI


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own HEMATO_HOME and models folder, never the developer's.

    Job workers the test started (directly, or through an app it ran) are stopped afterwards.
    """
    home = tmp_path / "hemato_home"
    monkeypatch.setenv("HEMATO_HOME", str(home))
    monkeypatch.setenv("HEMATO_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(WEIGHTS_DIR))
    for name in (
        "HEMATO_DATABASE_URL",
        "HEMATO_REDIS_URL",
        "HEMATO_WORKER",
        "HEMATO_HEAVY_SLOTS",
        "HEMATO_LIGHT_SLOTS",
    ):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole session (initdb + pg_ctl in a temporary folder)."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test's database: the SQLite file under its HEMATO_HOME, or a fresh database on the real PostgreSQL.

    Set as ``HEMATO_DATABASE_URL`` too, so code reading the settings uses the same database.
    """
    if request.param == "sqlite":
        return get_settings().db_url
    url = request.getfixturevalue("postgres").new_database()
    monkeypatch.setenv("HEMATO_DATABASE_URL", url)
    return url


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, pbc_mini: Path) -> Path:
    """A MobileNetV2 (ImageNet features, 96 px) with its head trained on pbc_mini, saved with its card.

    Small but genuinely trained, so explanations and predictions differ between classes.
    """
    import keras

    from hemato.data.datasets import discover_dataset, label_indices, load_images
    from hemato.vision.models import ModelCard, build_model, save_model

    keras.utils.set_random_seed(0)
    ds = discover_dataset(pbc_mini)
    classes = ds.classes
    x = load_images(ds.frame["path"].tolist(), TINY_SIZE).astype("float32")
    y = label_indices(ds.frame["label"].tolist(), classes)
    model, source = build_model("mobilenet_v2", classes, TINY_SIZE, weights_dir=WEIGHTS_DIR)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    order = np.random.default_rng(0).permutation(len(x))
    model.fit(x[order], y[order], epochs=8, batch_size=16, verbose=0)
    card = ModelCard("mobilenet_v2", classes, TINY_SIZE, "mobilenet_v2: scale to [-1, 1]", source, str(pbc_mini))
    return save_model(model, card, tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def models_dir(tiny_model_dir: Path, tmp_path: Path, pbc_mini: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny model installed as "default" in a fresh models folder, with pbc_mini as the dataset."""
    import shutil

    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models / "default")
    monkeypatch.setenv("HEMATO_MODELS_DIR", str(models))
    monkeypatch.setenv("HEMATO_DATA_DIR", str(pbc_mini))
    monkeypatch.setenv("HEMATO_TFLITE_EXPORT", "0")  # no background export processes in page tests
    return models


def project_path(*parts: str) -> str:
    """Absolute path inside the project (AppTest needs absolute paths)."""
    return str(PROJECT_ROOT.joinpath(*parts))
