"""A student signs in, answers a three-question exam in a real browser and sees the report."""

from __future__ import annotations

import pytest

from tests.conftest import PBC_MINI

pytestmark = pytest.mark.e2e


@pytest.fixture
def app_env(app_env: dict[str, str]) -> dict[str, str]:
    return {**app_env, "HEMATO_DATA_DIR": str(PBC_MINI)}


def wait_idle(page) -> None:
    """Wait until Streamlit has finished the current rerun (its status widget is gone)."""
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached")


def test_exam_of_three_questions_ends_with_a_report(app_url, page, isolated_home) -> None:
    from playwright.sync_api import expect

    page.goto(f"{app_url}/Quiz")
    page.get_by_role("textbox", name="Your display name").fill("  Ada Lovelace ")
    page.get_by_role("button", name="Continue").click()
    page.get_by_text("Signed in as Ada Lovelace").wait_for()
    wait_idle(page)
    page.get_by_text("Exam (N questions").click()
    wait_idle(page)
    questions = page.get_by_role("spinbutton", name="Questions")
    questions.fill("3")
    questions.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Start").click()
    for number in (1, 2, 3):
        page.get_by_text(f"Question {number} of 3").wait_for()
        wait_idle(page)
        choices = page.get_by_role("radiogroup", name="Which white cell is this?")
        choices.get_by_text("Monocyte", exact=True).click()
        expect(choices.locator("input[type=radio]").nth(2)).to_be_checked()
        page.get_by_role("button", name="Submit answer").click()
    page.get_by_text("Your results").wait_for()
    page.get_by_text("Review question by question").wait_for()
    body = page.inner_text("body")
    assert "Score" in body and "/ 3" in body
    assert "Accuracy per class" in body and "Mistakes" in body
    assert "no model yet" in body
    page.screenshot(path=str(isolated_home.parent / "quiz_report.png"))

    # the answers were stored the moment they were given, under the app's HEMATO_HOME
    from hemato.teaching.store import QuizStore

    store = QuizStore()
    student = store.get_or_create_student("ada lovelace")
    assert store.student_step(student.id) == 3
