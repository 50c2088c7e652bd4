"""A real browser starts a tiny training run and sees the curves and the finished status."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _slider_to_min(page, label: str) -> None:
    slider = page.get_by_role("slider", name=label)
    slider.focus()
    slider.press("Home")


def test_tiny_run_from_the_train_page(app_env, pbc_mini: Path, app_url, page) -> None:
    page.goto(f"{app_url}/Train")
    page.get_by_text("Train a model").first.wait_for()
    data = page.get_by_role("textbox", name="Dataset folder or CSV manifest")
    data.fill(str(pbc_mini))
    data.press("Enter")
    _slider_to_min(page, "Input size (px)")
    _slider_to_min(page, "Head epochs")
    _slider_to_min(page, "Fine-tuning epochs")
    page.get_by_role("button", name="Train").click()
    page.get_by_text("started in the background").wait_for()
    page.get_by_text("Finished (done)").wait_for(timeout=300_000)
    assert page.locator(".js-plotly-plot").count() >= 1
    assert "val accuracy" in page.inner_text("body")
