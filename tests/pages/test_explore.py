"""AppTests of the Dataset explorer and Augmentation studio pages on real pbc_mini images."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from hemato.data import explore
from tests.conftest import project_path

EXPLORER = project_path("pages", "1_Dataset_Explorer.py")
STUDIO = project_path("pages", "2_Augmentation_Studio.py")


@pytest.fixture
def mini_env(pbc_mini: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HEMATO_DATA_DIR", str(pbc_mini))
    return pbc_mini


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    return "\n".join(str(p) for p in parts)


def _run_until(at: AppTest, done, timeout: float = 120) -> None:
    """Rerun the page until ``done(at)`` holds (background jobs finish between reruns)."""
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception, at.exception
        if done(at) or time.monotonic() > deadline:
            return
        time.sleep(0.5)


def test_explorer_overview_and_samples(mini_env: Path) -> None:
    at = AppTest.from_file(EXPLORER, default_timeout=60)
    at.run()
    assert not at.exception and not at.error
    assert [m.value for m in at.metric][:2] == ["80", "4"]
    assert len(at.get("plotly_chart")) == 1
    assert "Split composition" in _texts(at)
    at.segmented_control(key="explore_section").set_value("Samples").run()
    assert not at.exception
    assert sum(str(b.key).startswith("explore_view_") for b in at.button) == 24
    assert "80 images match." in _texts(at)
    at.multiselect(key="explore_grid_classes").set_value(["MONOCYTE"]).run()
    assert "20 images match." in _texts(at)
    at.button(key="explore_view_0").click().run()
    assert not at.exception
    text = _texts(at)
    assert "**Class:** MONOCYTE" in text and "360×363 px" in text


def test_explorer_statistics_and_duplicates_build_once(mini_env: Path, isolated_home: Path) -> None:
    at = AppTest.from_file(EXPLORER, default_timeout=60)
    at.run()
    at.segmented_control(key="explore_section").set_value("Statistics")
    at.run()
    assert "Measuring" in _texts(at) or len(at.dataframe) >= 1
    _run_until(at, lambda a: len(a.dataframe) >= 2)
    assert len(at.dataframe) == 2, "pbc_mini and bccd_wbc_crops summaries side by side"
    summary = at.dataframe[0].value
    assert list(summary.index) == ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
    assert (summary["images"] == 20).all()
    assert len(at.get("plotly_chart")) == 3
    assert list((isolated_home / "cache" / "explore").glob("stats_*.parquet"))
    at.segmented_control(key="explore_section").set_value("Duplicates").run()
    assert not at.exception
    assert explore.LEAK_EXPLANATION[:40] in _texts(at)
    assert "No duplicates at this threshold." in [s.value for s in at.success]


def test_explorer_bad_folder_gets_a_clear_error(mini_env: Path, tmp_path: Path) -> None:
    at = AppTest.from_file(EXPLORER, default_timeout=60)
    at.run()
    at.sidebar.radio(key="explore_source").set_value("A folder path…").run()
    at.sidebar.text_input(key="explore_folder").input(str(tmp_path / "nowhere")).run()
    assert not at.exception
    assert at.error and "does not exist" in at.error[0].value
    empty = tmp_path / "empty"
    empty.mkdir()
    at.sidebar.text_input(key="explore_folder").input(str(empty)).run()
    assert at.error and "No images found" in at.error[0].value


@pytest.mark.slow
def test_explorer_embedding_map_runs_as_a_job(mini_env: Path) -> None:
    at = AppTest.from_file(EXPLORER, default_timeout=60)
    at.run()
    at.segmented_control(key="explore_section").set_value("Embedding map").run()
    at.button(key="explore_embed_go").click().run()
    assert not at.exception
    _run_until(at, lambda a: len(a.get("plotly_chart")) == 1, timeout=300)
    assert not at.error
    assert len(at.get("plotly_chart")) == 1


def test_studio_presets_and_sliders(mini_env: Path) -> None:
    at = AppTest.from_file(STUDIO, default_timeout=60)
    at.run()
    assert not at.exception and not at.error
    assert len(at.toggle) == 14
    assert "standard" in at.success[0].value
    assert at.toggle(key="aug_on_rotation").value and not at.toggle(key="aug_on_salt_pepper").value
    assert "Why it helps" in _texts(at) and "When it hurts" in _texts(at)
    at.slider(key="aug_rotation_max_degrees").set_value(30.0).run()
    assert not at.exception
    assert not at.success and "Custom settings" in _texts(at)
    at.selectbox(key="aug_preset").set_value("none").run()
    assert "none" in at.success[0].value
    assert not any(t.value for t in at.toggle)
    at.selectbox(key="aug_preset").set_value("strong").run()
    assert at.toggle(key="aug_on_shear").value
    at.selectbox(key="aug_class").set_value("LYMPHOCYTE").run()
    at.number_input(key="aug_index").set_value(20).run()
    assert not at.exception and not at.error
