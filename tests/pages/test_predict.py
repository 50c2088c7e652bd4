"""AppTest of the Predict & Explain page, and the bad-upload table through the page's and the CLI's paths."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from hemato.cli import main
from hemato.data.imaging import MAX_PIXELS
from hemato.ui.explain import SOURCE_DATASET, decode_uploads
from tests.conftest import project_path

PAGE = project_path("pages", "5_Predict_and_Explain.py")


def _run(at: AppTest | None = None) -> AppTest:
    at = at or AppTest.from_file(PAGE, default_timeout=180)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    return "\n".join(parts + [e.value for e in at.error] + [w.value for w in at.warning])


def _captions(at: AppTest) -> list[str]:
    return [img.caption for element in at.get("image") for img in element.proto.imgs]


def _pick_from_dataset(at: AppTest) -> AppTest:
    at.radio(key="predict_input_source").set_value(SOURCE_DATASET)
    return _run(at)


def test_without_images_the_page_asks_for_some(models_dir: Path) -> None:
    at = _run()
    assert "Upload one or more cell images" in _texts(at)


@pytest.mark.slow
def test_without_a_model_the_page_says_so_and_imagenet_still_works(pbc_mini: Path, monkeypatch) -> None:
    monkeypatch.setenv("HEMATO_DATA_DIR", str(pbc_mini))
    at = _pick_from_dataset(_run())
    texts = _texts(at)
    assert "No trained model yet" in texts
    assert "need a trained model" in texts
    assert "ImageNet" in texts
    assert not at.error


def test_dataset_image_is_predicted_and_explained(models_dir: Path) -> None:
    at = _pick_from_dataset(_run())
    texts = _texts(at)
    assert "confidence" in texts and "true class **EOSINOPHIL**" in texts
    assert "**Grad-CAM** for class" in texts
    assert "Grad-CAM overlay" in _captions(at)
    assert "layers," in texts and "parameters" in texts  # layer view
    at.selectbox(key="predict_saliency_target").set_value("MONOCYTE")
    at.selectbox(key="predict_saliency_method").set_value("layercam")
    at = _run(at)
    assert "**LayerCAM** for class **MONOCYTE**" in _texts(at)
    assert not at.error


def test_several_images_give_a_table_and_csv(models_dir: Path) -> None:
    at = _pick_from_dataset(_run())
    widget = at.multiselect(key="predict_input_pick_EOSINOPHIL")
    widget.set_value(widget.options[:3])
    at = _run(at)
    table = at.dataframe[0].value
    assert len(table) == 3 and {"image", "predicted", "confidence", "true class"} <= set(table.columns)
    assert at.selectbox(key="predict_current").options == widget.options[:3]


@pytest.mark.slow
def test_slow_method_runs_in_the_background_and_shows_up(models_dir: Path) -> None:
    at = _pick_from_dataset(_run())
    at.selectbox(key="predict_saliency_method").set_value("scorecam")
    at = _run(at)
    assert "press the button" in _texts(at)
    at.button(key="predict_saliency_run_slow").click()
    at = _run(at)
    deadline = time.monotonic() + 120
    while "Faster Score-CAM overlay" not in _captions(at) and time.monotonic() < deadline:
        time.sleep(1)
        at = _run(at)
    assert "Faster Score-CAM overlay" in _captions(at)


# ------------------------------------------------------------------------------------------- bad uploads


class _Upload:
    """The part of Streamlit's UploadedFile the page uses."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name, self._data = name, data

    def getvalue(self) -> bytes:
        return self._data


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _cases(cell: Path) -> list[tuple[str, bytes, str | None]]:
    """(file name, bytes, expected error fragment or None when it must be converted to RGB)."""
    rgb = Image.open(cell).convert("RGB")
    jpeg = cell.read_bytes()
    deep = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
    assert deep.mode.startswith("I;16")
    return [
        ("notes.jpg", b"this is not an image at all", "not an image file"),
        ("empty.png", b"", "empty"),
        ("truncated.jpg", jpeg[: len(jpeg) // 2], "damaged or truncated"),
        ("huge.png", _encode(Image.new("L", (8000, MAX_PIXELS // 8000 + 10)), "PNG"), "pixel limit"),
        ("sixteen_bit.png", _encode(deep, "PNG"), None),
        ("cmyk.jpg", _encode(rgb.convert("CMYK"), "JPEG"), None),
        ("rgba.png", _encode(rgb.convert("RGBA"), "PNG"), None),
        ("gray.bmp", _encode(rgb.convert("L"), "BMP"), None),
        ("plain.tif", _encode(rgb, "TIFF"), None),
    ]


def test_bad_uploads_are_converted_or_refused_with_a_message(pbc_mini: Path) -> None:
    cell = next(pbc_mini.glob("NEUTROPHIL/*.jpg"))
    cases = _cases(cell)
    images, errors = decode_uploads([_Upload(name, data) for name, data, _ in cases])
    converted = {img.name: img.array for img in images}
    for name, _, expected in cases:
        if expected is None:
            assert name in converted, (name, errors)
            array = converted[name]
            assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
            assert array.std() > 5  # real content, not a blank conversion
        else:
            matching = [e for e in errors if e.startswith(f"{name}:")]
            assert matching and expected in matching[0], (name, errors)
    assert len(images) + len(errors) == len(cases)


def test_cli_predict_refuses_bad_files_and_writes_nothing(tiny_model_dir: Path, pbc_mini: Path, tmp_path, capsys):
    cell = next(pbc_mini.glob("NEUTROPHIL/*.jpg"))
    folder = tmp_path / "uploads"
    folder.mkdir()
    for name, data, _ in _cases(cell):
        (folder / name).write_bytes(data)
    before = sorted((p.name, p.stat().st_mtime) for p in folder.iterdir())
    paths = sorted(folder.iterdir())
    assert main(["predict", "--model", str(tiny_model_dir), "--csv", *map(str, paths)]) == 1
    captured = capsys.readouterr()
    good = {name for name, _, expected in _cases(cell) if expected is None}
    rows = captured.out.strip().splitlines()[1:]
    assert {Path(r.split(",")[0]).name for r in rows} == good
    for name, _, expected in _cases(cell):
        if expected is not None:
            assert any(name in line and expected in line for line in captured.err.splitlines()), name
    assert sorted((p.name, p.stat().st_mtime) for p in folder.iterdir()) == before
