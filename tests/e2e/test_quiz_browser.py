"""A student signs in, answers a three-question exam in a real browser and sees the report."""

from __future__ import annotations

import pytest

from tests.conftest import PBC_MINI

pytestmark = pytest.mark.e2e


@pytest.fixture
def app_env(app_env: dict[str, str]) -> dict[str, str]:
    return {**app_env, "HEMATO_DATA_DIR": str(PBC_MINI)}


def test_exam_of_three_questions_ends_with_a_report(app_url, page, isolated_home) -> None:
    page.goto(f"{app_url}/Quiz")
    page.get_by_role("textbox", name="Your display name").fill("  Ada Lovelace ")
    page.get_by_role("button", name="Continue").click()
    page.get_by_text("Signed in as Ada Lovelace").wait_for()
    page.get_by_text("Exam (N questions").click()
    questions = page.get_by_role("spinbutton", name="Questions")
    questions.fill("3")
    questions.press("Enter")
    page.get_by_role("button", name="Start").click()
    for number in (1, 2, 3):
        page.get_by_text(f"Question {number} of 3").wait_for()
        page.screenshot(path=f"/tmp/shots/e2e_q{number}.png")
        open(f"/tmp/shots/e2e_q{number}.html", "w").write(page.content())
        page.get_by_text("Monocyte", exact=True).click()
        page.get_by_role("button", name="Submit answer").click()
    page.get_by_text("Your results").wait_for()
    body = page.inner_text("body")
    assert "Score" in body and "/ 3" in body
    assert "Accuracy per class" in body and "Review question by question" in body
    assert "no model yet" in body
    page.screenshot(path=str(isolated_home.parent / "quiz_report.png"))

    # the answers were stored the moment they were given, under the app's HEMATO_HOME
    from hemato.config import get_settings
    from hemato.store import QuizStore

    store = QuizStore(get_settings().db_path)
    student = store.get_or_create_student("ada lovelace")
    assert store.student_step(student.id) == 3
