"""Page setup, cached status and model loading shared by every page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import streamlit as st

from hemato.config import PROJECT_ROOT, Settings, get_settings
from hemato.data.datasets import Dataset, DatasetError, discover_dataset
from hemato.status import AppStatus, available_models, collect_status
from hemato.vision.models import load_model, model_key

PAGES_DIR = PROJECT_ROOT / "pages"


def setup_page(title: str, icon: str = "🩸") -> None:
    """Set the page config and title consistently on every page."""
    st.set_page_config(page_title=f"{title} · HematoVision", page_icon=icon, layout="wide")
    st.title(title)


@st.cache_data(ttl=30, show_spinner=False, max_entries=4)
def _status_for(settings: Settings) -> AppStatus:
    return collect_status(settings)


def app_status() -> AppStatus:
    """The dataset/weights/models status for the current settings, recomputed at most every 30 s."""
    return _status_for(get_settings())


def page_files() -> list[tuple[Path, str]]:
    """Every page script with a readable label derived from its file name, in menu order."""
    pages = []
    for path in sorted(PAGES_DIR.glob("*.py")):
        label = re.sub(r"^\d+_", "", path.stem).replace("_", " ")
        pages.append((path, label))
    return pages


def page_links() -> None:
    """Render a link to every page."""
    for path, label in page_files():
        st.page_link(str(path.relative_to(PROJECT_ROOT)), label=label)


@st.cache_resource(show_spinner="Loading model…", max_entries=4)
def _load_model(path: str, key: str) -> tuple[Any, Any]:
    return load_model(Path(path))


def load_model_cached(model_dir: Path) -> tuple[Any, Any]:
    """Load a model once per version (its :func:`~hemato.vision.models.model_key`); shared, never train or change it."""
    return _load_model(str(model_dir), model_key(model_dir))


def model_picker(key: str, label: str = "Model") -> Path | None:
    """Sidebar select box of loadable models (default model first); remembers the choice across pages.

    Returns:
        The chosen model folder, or None (after showing how to get a model) when none exists.
    """
    models = available_models(get_settings())
    if not models:
        st.info(
            "No trained model yet. Build the default one with the README's run command, or train one on the Train page."
        )
        return None
    labels = [name for name, _ in models]
    remembered = st.session_state.get("chosen_model")
    index = labels.index(remembered) if remembered in labels else 0
    choice = st.sidebar.selectbox(label, labels, index=index, key=key)
    st.session_state["chosen_model"] = choice
    return dict(models)[choice]


@st.cache_data(ttl=60, show_spinner="Reading the dataset…", max_entries=8)
def load_dataset(path: str) -> Dataset:
    """Discover the dataset at ``path`` (cached for a minute)."""
    return discover_dataset(path)


def dataset_or_error(path: Path | None, missing: str, empty_hint: str = "") -> Dataset | None:
    """The dataset at ``path`` (cached), or None after an ``st.error`` saying what is wrong and what to do.

    Args:
        path: Dataset folder or manifest; None when nothing is configured.
        missing: The message shown when ``path`` is None.
        empty_hint: Appended to the message for a dataset without images.
    """
    if path is None:
        st.error(missing)
        return None
    try:
        ds = load_dataset(str(path))
    except (DatasetError, OSError) as exc:
        st.error(str(exc))
        return None
    if len(ds) == 0:
        st.error(f"{path} holds no usable images.{empty_hint}")
        return None
    return ds
