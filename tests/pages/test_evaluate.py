"""AppTest of the Evaluate page: empty state, a background evaluation, drill-down, comparison and cross-lab panel."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from hemato.config import get_settings
from hemato.vision.evaluate import evaluate_model
from hemato.vision.models import load_model, save_model
from tests.conftest import project_path

PAGE = project_path("pages", "4_Evaluate.py")


def _run(at: AppTest | None = None) -> AppTest:
    at = at or AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    return "\n".join(parts + [e.value for e in at.error] + [w.value for w in at.warning])


def test_without_a_model_the_page_says_how_to_get_one(pbc_mini: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEMATO_DATA_DIR", str(pbc_mini))
    at = _run()
    assert any("No trained model yet" in i.value for i in at.info)
    assert not at.button


def test_evaluate_button_runs_a_background_job_and_shows_results(models_dir: Path, pbc_mini: Path) -> None:
    at = _run()
    assert any("has not been evaluated on 80 images" in i.value for i in at.info)
    assert at.selectbox(key="evaluate_data_split").value == "all images"
    at.button(key="evaluate_main_start").click()
    at = _run(at)
    deadline = time.monotonic() + 300
    while not at.metric and time.monotonic() < deadline:
        assert not at.error, [e.value for e in at.error]
        time.sleep(1)
        at = _run(at)
    labels = {m.label: m.value for m in at.metric}
    assert labels["Images scored"] == "80"
    assert labels["Skipped"] == "0"
    assert labels["Accuracy"].endswith("%")


def test_cached_result_renders_instantly_with_drilldown(models_dir: Path, pbc_mini: Path) -> None:
    result = evaluate_model(models_dir / "default", pbc_mini, split="all", cache_dir=get_settings().cache_dir)
    at = _run()
    assert {m.label for m in at.metric} >= {"Accuracy", "Macro-F1", "Balanced accuracy", "ECE (15 bins)"}
    assert f"{result['accuracy']:.1%}" in [m.value for m in at.metric]
    assert at.radio(key="evaluate_main_norm").value == "Counts"
    at.radio(key="evaluate_main_norm").set_value("Row-normalised (recall)")
    at = _run(at)

    at.selectbox(key="evaluate_main_true").set_value("MONOCYTE")
    at.selectbox(key="evaluate_main_pred").set_value("MONOCYTE")
    at = _run(at)
    texts = _texts(at)
    assert "True MONOCYTE → predicted MONOCYTE (correct)" in texts
    expected = sum(1 for r in result["rows"] if r["label"] == "MONOCYTE" and r["predicted"] == "MONOCYTE")
    assert f"{expected} image(s)" in texts
    assert any(h.value == "Calibration" for h in at.subheader)


def test_typed_path_that_does_not_exist_is_a_clear_error(models_dir: Path, tmp_path: Path) -> None:
    at = _run()
    at.selectbox(key="evaluate_data_dataset").set_value("Type a path…")
    at = _run(at)
    at.text_input(key="evaluate_data_typed").input(str(tmp_path / "nowhere"))
    at = _run(at)
    assert any("does not exist" in e.value for e in at.error)


def test_compare_two_models_on_the_same_images(models_dir: Path, pbc_mini: Path) -> None:
    model, card = load_model(models_dir / "default")
    head = model.get_layer("predictions")
    kernel, bias = head.get_weights()
    head.set_weights([kernel[:, ::-1], bias[::-1]])  # a second model that answers differently
    save_model(model, card, models_dir / "second")
    cache = get_settings().cache_dir
    results = {
        name: evaluate_model(models_dir / name, pbc_mini, split="all", cache_dir=cache)
        for name in ("default", "second")
    }
    assert results["default"]["accuracy"] != results["second"]["accuracy"]
    at = _run()
    assert at.multiselect(key="evaluate_compare_models").value == ["default (mobilenet_v2)", "second (mobilenet_v2)"]
    tables = [df.value for df in at.dataframe]
    compare = next(t for t in tables if "macro-F1" in getattr(t, "columns", []))
    assert list(compare.index) == ["default", "second"]
    for name, result in results.items():
        assert compare.loc[name, "accuracy"] == pytest.approx(result["accuracy"], abs=5e-4)


def test_cross_lab_panel_offers_the_check_and_explains_it(models_dir: Path) -> None:
    at = _run()
    texts = _texts(at)
    assert "Why the two scores differ" in texts
    assert "bccd_wbc_crops" in texts
    assert at.button(key="evaluate_crosslab_start").label == "Run the cross-lab check"
