"""AppTest smoke tests of the Train page."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import project_path

PAGE = project_path("pages", "3_Train.py")


def test_train_page_renders_form_and_empty_history(pbc_mini: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEMATO_DATA_DIR", str(pbc_mini))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    assert at.text_input(key="train_data").value == str(pbc_mini)
    assert at.selectbox(key="train_backbone").options[:2] == [
        "MobileNetV2 (transfer learning)",
        "VGG16 (transfer learning)",
    ]
    assert "standard" in at.selectbox(key="train_aug").options
    assert any("No runs yet" in i.value for i in at.info)


def test_one_class_dataset_is_refused_with_a_message(
    pbc_mini: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(pbc_mini / "MONOCYTE", tmp_path / "one" / "MONOCYTE")
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.text_input(key="train_data").set_value(str(tmp_path / "one"))
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert any("Training not started" in e.value and "one class" in e.value for e in at.error)


def test_missing_weights_offer_random_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(tmp_path))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert any("Start from random weights" in w.value for w in at.warning)


def test_fine_tuning_controls_only_for_pretrained_transfer(pbc_mini: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEMATO_DATA_DIR", str(pbc_mini))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert at.slider(key="train_ft_layers").value > 0
    at.selectbox(key="train_backbone").set_value("small_cnn").run()
    assert not at.exception, at.exception
    keys = {s.key for s in at.slider}
    assert "train_ft_epochs" not in keys and "train_ft_layers" not in keys
    assert not [c for c in at.checkbox if c.key == "train_random"], "the small CNN has no ImageNet weights to skip"
    at.selectbox(key="train_backbone").set_value("mobilenet_v2").run()
    at.checkbox(key="train_random").check().run()
    assert "train_ft_layers" not in {s.key for s in at.slider}
    assert any("every layer learns" in c.value for c in at.caption)
