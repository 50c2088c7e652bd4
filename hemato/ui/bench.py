"""Page-level speed figures, measured through the real page script with Streamlit's AppTest.

``python -m hemato bench quiz``: how long a student waits for the feedback on their first answer.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hemato.config import PROJECT_ROOT, get_settings
from hemato.data.datasets import discover_dataset
from hemato.vision.models import ModelCard, build_model, get_backbone, save_model


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return round(time.perf_counter() - start, 2)


def bench_quiz(think_s: float = 5.0, backbone: str = "mobilenet_v2") -> dict[str, Any]:
    """Time a practice quiz on the Quiz page: start, the first answer's feedback (verdict + Grad-CAM), the next ones.

    Runs with a fresh HEMATO_HOME and a freshly built model of ``backbone`` (ImageNet weights, untrained head:
    latency does not depend on training) on the configured dataset, in this process, so the first model call of
    the page is cold, as after an app start.

    Args:
        think_s: Seconds the student looks at the first image before answering.
        backbone: The architecture of the model the page uses.

    Returns:
        Seconds per step (``start_s``, ``first_feedback_s``, ``next_question_s``, ``second_feedback_s``).
    """
    from streamlit.testing.v1 import AppTest

    settings = get_settings()
    if settings.data_dir is None:
        raise ValueError("No dataset configured: set HEMATO_DATA_DIR.")
    saved = {name: os.environ.get(name) for name in ("HEMATO_HOME", "HEMATO_MODELS_DIR", "HEMATO_TFLITE_EXPORT")}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(HEMATO_HOME=str(Path(tmp) / "home"), HEMATO_MODELS_DIR=str(Path(tmp) / "models"))
        try:
            classes = discover_dataset(settings.data_dir).classes
            size = get_backbone(backbone).default_size
            model, source = build_model(backbone, classes, size, weights_dir=settings.weights_dir)
            card = ModelCard(backbone, classes, size, get_backbone(backbone).preprocessing, source, "bench")
            save_model(model, card, Path(tmp) / "models" / "default")
            del model
            at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "6_Quiz.py"), default_timeout=600)
            page_s = _timed(at.run)
            at.text_input(key="quiz_name").input("Bench")
            next(b for b in at.button if b.label == "Continue").click().run()
            at.radio(key="quiz_mode_choice").set_value("practice").run()
            start_s = _timed(at.button(key="quiz_start").click().run)
            time.sleep(think_s)

            def answer() -> None:
                radio = next(r for r in at.radio if str(r.key).startswith("quiz_choice"))
                radio.set_value(radio.options[0])
                next(b for b in at.button if b.label == "Submit answer").click().run()

            first_s = _timed(answer)
            if "**Model:**" not in "\n".join(m.value for m in at.markdown):
                raise RuntimeError(f"the feedback shows no model verdict: {[e.value for e in at.error]}")
            next_s = _timed(next(b for b in at.button if b.label == "Next image").click().run)
            second_s = _timed(answer)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    return {
        "backbone": backbone,
        "think_s": think_s,
        "first_page_s": page_s,
        "start_s": start_s,
        "first_feedback_s": first_s,
        "next_question_s": next_s,
        "second_feedback_s": second_s,
        "note": "AppTest runs each page script to its end; in a browser the question shows before start_s ends",
    }
