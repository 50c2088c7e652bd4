"""Settings come from the environment, with defaults that find ../shared offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from hemato.config import PROJECT_ROOT, get_settings
from tests.conftest import PBC, WEIGHTS_DIR


def test_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEMATO_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(tmp_path / "w"))
    monkeypatch.setenv("HEMATO_HOME", str(tmp_path / "h"))
    s = get_settings()
    assert (s.data_dir, s.weights_dir, s.home) == (tmp_path / "d", tmp_path / "w", tmp_path / "h")
    assert s.db_path.parent == tmp_path / "h" and s.runs_dir == tmp_path / "h" / "runs"
    assert not (tmp_path / "h").exists(), "reading settings must not create folders"
    s.ensure_home()
    assert s.cache_dir.is_dir()


def test_defaults_find_shared_data_and_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HEMATO_DATA_DIR", "HEMATO_WEIGHTS_DIR", "HEMATO_HOME", "HEMATO_MODELS_DIR"):
        monkeypatch.delenv(name, raising=False)
    s = get_settings()
    local_data = PROJECT_ROOT / "data"
    assert s.data_dir in (local_data, PBC.resolve())
    assert s.weights_dir == WEIGHTS_DIR.resolve()
    assert s.home == PROJECT_ROOT / ".hemato" and s.models_dir == PROJECT_ROOT / "models"
