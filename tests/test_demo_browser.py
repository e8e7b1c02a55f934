"""The demo page in headless Chromium against gunicorn, a real worker, Postgres and Redis."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from tests import browser, services
from tests.images import open_image

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def demo_url(stack, log_dir):
    """gunicorn (gevent) serving the demo on the shared stack."""
    env = {**stack.env, "GENLINE_DEMO": "1", "GENLINE_DEMO_RATE_LIMIT": "200/minute"}
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
    context = chromium.new_context(accept_downloads=True, viewport={"width": 1100, "height": 760})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(demo_url + "/")
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def last_demo_job(stack):
    from pipeline.models import Job, db
    with stack.app.app_context():
        job = db.session.execute(select(Job).where(Job.tenant_id == "demo").order_by(Job.id.desc()).limit(1)).scalar_one()
        return job.id, job.status


def test_submit_shows_progress_then_the_image_which_downloads(page, stack, tmp_path, log_dir):
    # Given the demo page, a prompt with markup in it, a size and a slow provider
    prompt = "a lighthouse <b>at dusk</b> <img src=x onerror=alert(1)>"
    page.fill("#prompt", prompt)
    page.select_option("#size", "256x256")
    page.select_option("#simulate", "slow")

    # When the user submits
    page.click("#submit")

    # Then the form is disabled, a skeleton of the output's size shows, and progress moves
    assert page.is_disabled("#submit") and page.is_disabled("#prompt")
    assert page.get_attribute("#frame", "class") == "frame skeleton"
    assert page.eval_on_selector("#frame", "el => el.style.aspectRatio") == "256 / 256"
    page.wait_for_function("parseFloat(document.getElementById('bar-fill').style.width) > 10", timeout=30_000)
    assert "simulated work" in page.text_content("#status")
    assert page.is_visible("#cancel")
    # And the prompt is shown as text, never as HTML
    assert page.text_content("#prompt-echo") == prompt
    assert page.query_selector("#prompt-echo b") is None and page.query_selector("#prompt-echo img") is None
    page.screenshot(path=str(log_dir / "demo-progress.png"))

    # When the job completes, the image shows and the form is usable again
    page.wait_for_selector("#output:not([hidden])", timeout=45_000)
    assert page.eval_on_selector("#output", "img => [img.naturalWidth, img.naturalHeight]") == [256, 256]
    assert page.is_enabled("#submit") and not page.is_visible("#cancel")
    page.screenshot(path=str(log_dir / "demo-done.png"))

    # And the download button saves the PNG
    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / "out.png"
    download.value.save_as(saved)
    image = open_image(saved.read_bytes())
    assert image.format == "PNG" and image.size == (256, 256)
    assert last_demo_job(stack)[1] == "completed"


def test_an_invalid_prompt_shows_its_message_and_retry(page):
    # Given a blank prompt (spaces only)
    page.fill("#prompt", "    ")

    # When the user submits
    page.click("#submit")

    # Then the error says it was an invalid prompt, why, and offers a retry; the form is usable
    page.wait_for_selector("#error:not([hidden])", timeout=15_000)
    assert page.text_content("#error-kind") == "Invalid prompt"
    assert "must not be blank" in page.text_content("#error-message")
    assert page.is_visible("#retry") and page.is_enabled("#submit")

    # And retrying after fixing the prompt works
    page.fill("#prompt", "now a real prompt")
    page.select_option("#size", "256x256")
    page.click("#retry")
    page.wait_for_selector("#output:not([hidden])", timeout=45_000)
    assert page.is_hidden("#error")


def test_cancel_stops_the_job_and_says_so(page, stack):
    # Given a slow job running from the page
    page.fill("#prompt", "to be canceled")
    page.select_option("#size", "256x256")
    page.select_option("#simulate", "slow")
    page.click("#submit")
    page.wait_for_function("parseFloat(document.getElementById('bar-fill').style.width) > 0", timeout=30_000)

    # When the user cancels
    page.click("#cancel")

    # Then the page says it was canceled, and the job is canceled
    page.wait_for_selector("#error:not([hidden])", timeout=15_000)
    assert page.text_content("#error-kind") == "Canceled"
    assert page.is_enabled("#submit") and page.is_hidden("#output")
    assert last_demo_job(stack)[1] == "canceled"


@pytest.mark.parametrize("simulation, kind", [("provider_error", "Provider failure"), ("timeout", "Timed out")])
def test_failures_say_which_kind_they_were(page, simulation, kind):
    page.fill("#prompt", f"this will end in {simulation}")
    page.select_option("#size", "256x256")
    page.select_option("#simulate", simulation)
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])", timeout=45_000)
    assert page.text_content("#error-kind") == kind
    assert page.text_content("#error-message")
    assert page.is_visible("#retry")
