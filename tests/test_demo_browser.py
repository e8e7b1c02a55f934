"""The demo page in headless Chromium against gunicorn, a real worker, Postgres and Redis.

Screenshots go to the session's log directory; with ``GENLINE_SCREENSHOTS=docs/img``
the ones the docs show are written there (how docs/img/*.png are made).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from tests import browser, services
from tests.images import open_image

pytestmark = pytest.mark.browser

# The texts a validator or a provider writes: the page must never show them.
RAW_TEXTS = ("String should", "must not be blank", "simulated ", "Field required", "params.", "inputs.")


@pytest.fixture(scope="module")
def demo_url(stack, log_dir):
    """gunicorn (gevent) serving the demo on the shared stack, configured as `make dev` configures it."""
    env = {**stack.env, "GENLINE_DEMO": "1", "GENLINE_DEMO_ALLOW_HANG": "1", "GENLINE_DEMO_RATE_LIMIT": "200/minute"}
    proc, url = services.start_gunicorn(env, log_dir)
    yield url
    proc.stop()


@pytest.fixture(scope="module")
def chromium():
    if browser.chromium_path() is None:
        message = "no Chromium: apt-get install -y chromium (make test installs it when run as root)"
        pytest.fail(message) if services.IN_CI else pytest.skip(f"{message} (this fails in CI)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = browser.launch(p)
        yield b
        b.close()


@pytest.fixture
def page(chromium, demo_url):
    context = chromium.new_context(accept_downloads=True, viewport={"width": 1000, "height": 640})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(demo_url + "/")
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture
def shoot(log_dir):
    """``shoot(page, name)``: a screenshot into the log dir, or into GENLINE_SCREENSHOTS (docs/img)."""
    target = Path(os.environ.get("GENLINE_SCREENSHOTS") or log_dir)

    def take(page, name: str) -> None:
        target.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target / f"{name}.png"))
    return take


def last_demo_job(stack):
    from pipeline.store.models import Job, db
    with stack.app.app_context():
        job = db.session.execute(select(Job).where(Job.tenant_id == "demo").order_by(Job.id.desc()).limit(1)).scalar_one()
        return job.id, job.status


def assert_settled(page):
    """A terminal state: no skeleton, no progress bar, no queue line."""
    assert "skeleton" not in (page.get_attribute("#frame", "class") or "")
    assert page.is_hidden("#bar") and page.is_hidden("#queue")


def assert_no_raw_text(page):
    shown = page.inner_text("body")
    assert not any(raw in shown for raw in RAW_TEXTS), shown


def test_enter_submits_shows_progress_then_the_image_its_provider_and_a_download(page, stack, tmp_path, shoot):
    # Given the demo page, a prompt with markup in it, a size and a slow provider
    prompt = "a lighthouse <b>at dusk</b> <img src=x onerror=alert(1)>"
    page.select_option("#size", "256x256")
    page.select_option("#simulate", "slow")
    page.fill("#prompt", prompt)

    # When the user presses Enter in the prompt
    page.press("#prompt", "Enter")

    # Then the form is disabled, a skeleton of the output's size shows, and progress moves
    page.wait_for_selector("#frame.skeleton", timeout=5_000)
    assert page.is_disabled("#submit") and page.is_disabled("#prompt")
    assert page.eval_on_selector("#frame", "el => el.style.aspectRatio") == "256 / 256"
    page.wait_for_function("parseFloat(document.getElementById('bar-fill').style.width) > 10", timeout=30_000)
    assert "simulated work" in page.text_content("#status")
    assert page.is_visible("#cancel")
    # And the prompt is shown as text, never as HTML (Enter added no newline to it)
    assert page.text_content("#prompt-echo") == prompt
    assert page.query_selector("#prompt-echo b") is None and page.query_selector("#prompt-echo img") is None
    shoot(page, "demo-progress")

    # When the job completes, the image shows, the form is usable again, and nothing of the wait is left
    page.wait_for_selector("#output:not([hidden])", timeout=45_000)
    assert page.eval_on_selector("#output", "img => [img.naturalWidth, img.naturalHeight]") == [256, 256]
    assert page.is_enabled("#submit") and not page.is_visible("#cancel")
    assert_settled(page)
    # And a line says which provider drew it, and that `local` is a placeholder
    note = page.text_content("#provider")
    assert page.is_visible("#provider") and "local provider" in note and "placeholder" in note
    shoot(page, "demo-done")

    # And the download button saves the PNG
    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / "out.png"
    download.value.save_as(saved)
    image = open_image(saved.read_bytes())
    assert image.format == "PNG" and image.size == (256, 256)
    assert last_demo_job(stack)[1] == "completed"


def test_shift_enter_is_a_new_line_not_a_submit(page):
    page.fill("#prompt", "first line")
    page.press("#prompt", "Shift+Enter")
    page.keyboard.type("second line")
    assert page.input_value("#prompt") == "first line\nsecond line"
    assert page.is_hidden("#job") and page.is_enabled("#submit")


def test_a_queued_job_shows_its_place_in_the_queue(page, stack):
    # Given history (a few jobs ran, so queued jobs carry an ETA), then the shared worker
    # (two processes) busy with two slow jobs of another tenant
    headers = stack.new_tenant("busy")
    for job in [stack.submit(headers, {"prompt": f"warm {i}", "params": {"size": "16x16"}}) for i in range(3)]:
        stack.wait(headers, job["id"])
    busy = [stack.submit(headers, {"prompt": f"busy {i}", "params": {"size": "64x64", "simulate": {"latency_s": 8}}})
            for i in range(2)]
    for job in busy:
        stack.wait(headers, job["id"], statuses=("processing",), timeout=30)

    # When the page submits
    page.fill("#prompt", "waits its turn")
    page.select_option("#size", "256x256")
    page.click("#submit")

    # Then, while it is queued, the page says where it stands
    page.wait_for_selector("#queue:not([hidden])", timeout=10_000)
    assert "in the queue" in page.text_content("#queue").lower()
    # And when it will start and finish (pipeline/service/eta.py)
    page.wait_for_function("/starts in about \\d+ s, done in about \\d+ s/.test("
                           "document.getElementById('queue').textContent)", timeout=10_000)
    # And once it runs and completes, the line is gone
    page.wait_for_selector("#output:not([hidden])", timeout=60_000)
    assert_settled(page)
    for job in busy:
        stack.wait(headers, job["id"])


@pytest.mark.parametrize("prompt, says", [
    ("", "Write a prompt first"),
    ("    ", "Write a prompt first"),
    ("x" * 4001, "too long: 4,000 characters at most, and it has 4,001"),
])
def test_a_rejected_prompt_says_why_in_words_and_leaves_no_skeleton(page, prompt, says, shoot):
    # Given a prompt the server refuses (set as a script would: past the textarea's maxlength)
    page.eval_on_selector("#prompt", "(el, value) => { el.removeAttribute('maxlength'); el.value = value; }", prompt)

    # When the user submits
    page.click("#submit")

    # Then the error says what is wrong in a sentence, not the validator's text, and nothing of a job shows
    page.wait_for_selector("#error:not([hidden])", timeout=15_000)
    assert page.text_content("#error-kind") == "Invalid prompt"
    assert says in page.text_content("#error-message")
    assert_no_raw_text(page)
    assert page.is_hidden("#frame") and page.is_hidden("#bar")
    assert page.is_visible("#retry") and page.is_enabled("#submit")
    if prompt == "":
        shoot(page, "demo-rejected")

    # And retrying after fixing the prompt works
    page.fill("#prompt", "now a real prompt")
    page.select_option("#size", "256x256")
    page.click("#retry")
    page.wait_for_selector("#output:not([hidden])", timeout=45_000)
    assert page.is_hidden("#error")


def test_escape_cancels_the_job_and_says_so(page, stack):
    # Given a slow job running from the page
    page.fill("#prompt", "to be canceled")
    page.select_option("#size", "256x256")
    page.select_option("#simulate", "slow")
    page.click("#submit")
    page.wait_for_function("parseFloat(document.getElementById('bar-fill').style.width) > 0", timeout=30_000)

    # When the user presses Escape
    page.keyboard.press("Escape")

    # Then the page says the user canceled it, clears the wait, and the job is canceled
    page.wait_for_selector("#error:not([hidden])", timeout=15_000)
    assert page.text_content("#error-kind") == "Canceled"
    assert "You canceled" in page.text_content("#error-message")
    assert page.is_enabled("#submit") and page.is_hidden("#output")
    assert_settled(page)
    assert last_demo_job(stack)[1] == "canceled"


def test_the_cancel_button_cancels_too(page, stack):
    page.fill("#prompt", "canceled by the button")
    page.select_option("#size", "256x256")
    page.select_option("#simulate", "slow")
    page.click("#submit")
    page.wait_for_function("parseFloat(document.getElementById('bar-fill').style.width) > 0", timeout=30_000)
    page.click("#cancel")
    page.wait_for_selector("#error:not([hidden])", timeout=15_000)
    assert page.text_content("#error-kind") == "Canceled"
    assert last_demo_job(stack)[1] == "canceled"


@pytest.mark.parametrize("simulation, kind, code", [
    ("provider_error", "Provider failure", "provider_error"),
    ("timeout", "Timed out", "timeout"),
    ("unsafe_content", "Prompt refused", "unsafe_content"),
    ("rate_limited", "Provider busy", "rate_limited"),
    ("hang", "Timed out", "timeout"),
])
def test_each_failure_says_which_kind_it_was_in_words(page, simulation, kind, code, shoot):
    # Given a job the Simulate menu makes fail in one way
    page.fill("#prompt", f"this will end in {simulation}")
    page.select_option("#size", "256x256")
    page.select_option("#simulate", simulation)

    # When it runs to its end
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)

    # Then the page names the kind, says what to do in a sentence, gives the code, and clears the wait
    assert page.text_content("#error-kind") == kind
    assert "try again" in page.text_content("#error-message").lower()
    assert page.text_content("#error-code") == f"error code: {code}"
    assert_no_raw_text(page)
    assert_settled(page)
    assert page.is_hidden("#frame") and page.is_visible("#retry")
    if simulation == "provider_error":
        shoot(page, "demo-failed")


def test_the_favicon_is_served(demo_url):
    response = requests.get(f"{demo_url}/favicon.ico", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/x-icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # the ICO header


def test_the_api_docs_render_request_bodies_as_examples_without_csp_errors(chromium, demo_url, shoot):
    # Given the /docs page in Chromium (Swagger UI from the flask-swagger-ui package, under a strict CSP)
    context = chromium.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    console = []
    page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console.append(str(exc)))
    page.goto(f"{demo_url}/docs")

    # When the reader opens "Create a job"
    page.wait_for_selector("#operations-default-jobs_create_job", timeout=20_000)
    page.click("#operations-default-jobs_create_job .opblock-summary")

    # Then the body is an example request, the Prefer header is documented, and nothing was blocked
    page.wait_for_selector("#operations-default-jobs_create_job .body-param__example", timeout=10_000)
    example = page.text_content("#operations-default-jobs_create_job .body-param__example")
    assert '"prompt"' in example and '"$ref"' not in example and '"properties"' not in example
    assert "Prefer" in page.text_content("#operations-default-jobs_create_job .parameters")
    shoot(page, "api-docs")
    context.close()
    assert console == [], console


def test_edit_without_an_image_asks_for_one(page):
    # Given the edit operation and no file chosen
    page.select_option("#operation", "edit")
    page.fill("#prompt", "make it blue")
    # When the user submits
    page.click("#submit")
    # Then the page asks for an image, in words
    page.wait_for_selector("#error:not([hidden])", timeout=10_000)
    assert page.text_content("#error-kind") == "No input image"
    assert "choose an image file" in page.text_content("#error-message")
    assert_no_raw_text(page)
    assert page.is_hidden("#job") and page.is_enabled("#submit")
