"""AppTest smoke test of the Home page."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import project_path


def _run_home() -> AppTest:
    at = AppTest.from_file(project_path("Home.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def test_home_shows_status(pbc_mini: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEMATO_DATA_DIR", str(pbc_mini))
    at = _run_home()
    assert any("pbc_mini: 80 images, 4 classes" in s.value for s in at.success)
    assert any("MobileNetV2" in s.value and "available" in s.value for s in at.success)
    assert any("No trained model yet" in i.value for i in at.info)


def test_home_explains_missing_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEMATO_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(tmp_path))
    at = _run_home()
    assert any("does not exist" in e.value for e in at.error)
    assert any("Keras will try to download" in w.value for w in at.warning)


def test_home_lists_a_trained_model(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models / "default")
    monkeypatch.setenv("HEMATO_MODELS_DIR", str(models))
    at = _run_home()
    assert any("`default`: mobilenet_v2, 4 classes" in m.value for m in at.markdown)


def test_home_does_not_import_tensorflow() -> None:
    """Home must paint fast: drawing its status panel may not pull in TensorFlow (~12 s cold)."""
    import subprocess
    import sys

    code = (
        "import sys, runpy\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({project_path('Home.py')!r}, default_timeout=60).run()\n"
        "assert not at.exception, at.exception\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'tf_keras_vis') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
