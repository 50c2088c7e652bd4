"""A real browser uploads a cell image and sees the prediction and the Grad-CAM overlay."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture
def app_env(app_env: dict[str, str], tiny_model_dir: Path, tmp_path: Path) -> dict[str, str]:
    models = tmp_path / "e2e_models"
    shutil.copytree(tiny_model_dir, models / "default")
    return {**app_env, "HEMATO_MODELS_DIR": str(models), "HEMATO_TFLITE_EXPORT": "0"}


def test_upload_shows_prediction_and_gradcam(app_url: str, page, pbc_mini: Path, tmp_path: Path) -> None:
    image = sorted(pbc_mini.glob("NEUTROPHIL/*.jpg"))[0]
    page.goto(f"{app_url}/Predict_and_Explain")
    page.get_by_text("Upload one or more cell images").wait_for()
    page.locator("input[type=file]").first.set_input_files(str(image))
    page.get_by_text("confidence").first.wait_for()
    body = page.inner_text("body")
    assert any(f"{c} with" in body for c in ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"))
    page.get_by_role("tab", name="Saliency").click()
    page.get_by_text("Grad-CAM overlay").first.wait_for()
    overlay = page.locator('[data-testid="stImage"]', has_text="Grad-CAM overlay").locator("img").first
    overlay.wait_for()
    assert overlay.evaluate("img => img.complete && img.naturalWidth") > 0
    assert page.get_by_text("Grad-CAM for class").first.is_visible()
    page.screenshot(path=str(tmp_path / "predict_gradcam.png"))
