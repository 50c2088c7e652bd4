"""In a real browser, moving an augmentation slider changes the preview grid; the same seed reproduces it."""

from __future__ import annotations

import time

import pytest

from tests.conftest import PBC_MINI

pytestmark = pytest.mark.e2e

PREVIEW_IMAGES = ".st-key-aug_preview img"


def _preview_sources(page) -> list[str]:
    return page.eval_on_selector_all(PREVIEW_IMAGES, "els => els.map(e => e.getAttribute('src'))")


def _wait_until_idle(page) -> None:
    """Wait until Streamlit has finished running the script (its 'running' indicator is gone)."""
    time.sleep(0.5)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")


def _wait_for_change(page, before: list[str], timeout: float = 120) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = _preview_sources(page)
        if len(now) == len(before) and now != before and all(now):
            return now
        time.sleep(0.5)
    return _preview_sources(page)


@pytest.fixture
def app_env(app_env: dict[str, str]) -> dict[str, str]:
    return {**app_env, "HEMATO_DATA_DIR": str(PBC_MINI)}


def test_moving_a_slider_changes_the_preview(app_url, page) -> None:
    page.goto(f"{app_url}/Augmentation_Studio")
    page.get_by_text("These settings are the").wait_for()
    page.locator(PREVIEW_IMAGES).nth(7).wait_for()
    _wait_until_idle(page)
    before = _preview_sources(page)
    assert len(before) == 8, "original + 7 draws"
    first_pixels = page.locator(PREVIEW_IMAGES).nth(1).screenshot()

    # Rotation from "any angle" to 0°: every draw comes out differently oriented.
    slider = page.locator(".st-key-aug_rotation_max_degrees input[type='range']")
    slider.focus()
    slider.press("Home")
    page.get_by_text("Custom settings").wait_for()
    after = _wait_for_change(page, before)
    assert after != before
    assert after[0] == before[0], "the original image does not change"
    assert page.locator(PREVIEW_IMAGES).nth(1).screenshot() != first_pixels
    assert page.locator(".st-key-aug_rotation_max_degrees input[type='range']").input_value() == "0"


def test_bad_upload_gets_a_clear_error(app_url, page, tmp_path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not an image")
    page.goto(f"{app_url}/Augmentation_Studio")
    page.get_by_text("Upload an image").click()
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(bad))
    page.get_by_text("Cannot use this upload").wait_for()
    assert "is not an image file" in page.inner_text("body")


def test_explorer_accepts_an_uploaded_zip_dataset(app_url, page, tmp_path) -> None:
    import zipfile

    archive = tmp_path / "cells.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for cls in ("LYMPHOCYTE", "MONOCYTE"):
            for img in sorted((PBC_MINI / cls).glob("*.jpg"))[:5]:
                zf.write(img, f"my_cells/{cls}/{img.name}")
    page.goto(f"{app_url}/Dataset_Explorer")
    page.get_by_text("Split composition").wait_for()
    page.get_by_text("Upload a zip…").click()
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(archive))
    page.get_by_text("This dataset has no split").wait_for()
    metrics = page.locator("[data-testid='stMetricValue']").all_inner_texts()
    assert metrics[:2] == ["10", "2"]
