"""A real browser runs an evaluation on the Evaluate page and clicks a confusion-matrix cell to open its gallery."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def eval_env(app_env: dict[str, str], tiny_model_dir: Path, pbc_mini: Path, tmp_path: Path) -> dict[str, str]:
    """The tiny model installed as "default" and pbc_mini as the configured data."""
    models = tmp_path / "e2e_models"
    shutil.copytree(tiny_model_dir, models / "default")
    app_env["HEMATO_MODELS_DIR"] = str(models)
    app_env["HEMATO_DATA_DIR"] = str(pbc_mini)
    return app_env


def test_evaluate_then_click_a_confusion_cell(eval_env: dict[str, str], app_url: str, page) -> None:
    page.goto(f"{app_url}/Evaluate")
    page.get_by_text("has not been evaluated on 80 images").wait_for()
    page.get_by_role("button", name="Evaluate").click()
    page.get_by_text("Balanced accuracy").wait_for(timeout=300_000)
    page.get_by_role("heading", name="Confusion matrix").wait_for()

    # One invisible square marker per cell, row by row: index 5 is true LYMPHOCYTE → predicted LYMPHOCYTE,
    # never the cell shown by default (the largest confusion, or the first cell when there is none).
    cell = page.locator(".js-plotly-plot .scatterlayer .trace path.point").nth(5)
    cell.wait_for(state="attached")
    box = cell.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

    page.get_by_text("True LYMPHOCYTE → predicted LYMPHOCYTE (correct)").wait_for()
    page.get_by_text("image(s); showing").first.wait_for()
    gallery = page.locator("[data-testid='stImage']")
    assert gallery.count() >= 1
    assert "LY_" in page.inner_text("body")  # PBC lymphocyte file names appear under the gallery images
