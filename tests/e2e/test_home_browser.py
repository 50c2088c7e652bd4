"""The app starts on a loopback port and a real browser sees the Home status panel."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_home_shows_dataset_and_weights(app_url, page) -> None:
    # No HEMATO_DATA_DIR: the default discovery (data/ or ../shared/data/pbc) is what a new user gets.
    page.goto(app_url)
    page.get_by_text("Status", exact=True).wait_for()
    page.get_by_text("pbc: 9,080 images, 4 classes").wait_for()
    body = page.inner_text("body")
    assert "EOSINOPHIL, LYMPHOCYTE, MONOCYTE, NEUTROPHIL" in body
    assert "MobileNetV2 (transfer learning): available" in body
    assert "VGG16 (transfer learning): available" in body
