"""The web UI in a real headless Chromium (Debian's, driven by Playwright),
against a real `hueyq run --web`: live progress, pause, cancel, retry, and
task arguments shown as text. Screenshots go to test-output/."""

import os

import pytest

from conftest import HERE, free_port, missing, wait_for, write_profile

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
SHOTS = HERE.parent / "test-output"


@pytest.fixture
def site(tmp_path, app_name, make_app, runtime):
    """A runtime with its web UI (thread workers, argument previews on)."""
    port = free_port()
    profile = write_profile(
        tmp_path / "ui.toml", "sqlite://%s" % (tmp_path / "queue.db"),
        "sqlite://%s" % (tmp_path / "store.db"), app_name,
        {"web": {"bind": "127.0.0.1:%d" % port, "workers": 1},
         "store": {"args_preview": True}})
    app = make_app(profile)
    rt = runtime(profile, extra_args=["--web"])
    rt.wait_ready()
    base = "http://127.0.0.1:%d" % port
    import urllib.request

    def healthy():
        try:
            with urllib.request.urlopen(base + "/api/health", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False
    wait_for(healthy, 30, message="the web UI and a live runtime")
    yield app, base
    rt.terminate()


@pytest.fixture
def page():
    if not os.path.exists(CHROMIUM):
        missing("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        tab.dialogs = []
        tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message),
                                         dialog.dismiss()))
        tab.set_default_timeout(20_000)
        yield tab
        browser.close()


def shot(tab, name):
    SHOTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(SHOTS / name), full_page=True)


def test_dashboard_is_live_and_a_progress_bar_moves(site, page):
    app, base = site
    for i in range(5):
        app.tasks.echo(i)
    job = app.tasks.steps(80, 0.05)
    page.goto(base + "/")
    page.wait_for_selector("article.card[data-queue=low]")
    assert page.locator("article.card").count() == 4
    bar = page.locator("#running tr[data-job='%s'] [role=progressbar]" % job.id)
    bar.wait_for()
    first = int(bar.get_attribute("aria-valuenow"))
    wait_for(lambda: int(bar.get_attribute("aria-valuenow")) >= first + 10, 20,
             message="the progress bar to move")
    assert page.locator("#live").inner_text() == "live"
    assert page.locator("#workers tbody tr").count() >= 4
    shot(page, "dashboard.png")
    wait_for(lambda: app.job(job.id, history=False).state == "complete", 30,
             message="the job to finish")
    page.locator("#running tr[data-job='%s']" % job.id).wait_for(state="detached")
    assert page.dialogs == []


def test_the_pause_button_pauses_the_queue(site, page):
    app, base = site
    page.goto(base + "/")
    card = page.locator("article.card[data-queue=low]")
    card.locator("button[data-action=pause]").click()
    card.locator("button[data-action=resume]").wait_for()
    assert "paused" in card.get_attribute("class")
    assert card.locator(".badge").inner_text() == "paused"
    assert app.queue_stats()["low"]["paused_by"] == ["user"]
    card.locator("button[data-action=resume]").click()
    card.locator("button[data-action=pause]").wait_for()
    assert app.queue_stats()["low"]["paused_by"] == []


def test_cancel_a_running_job(site, page):
    app, base = site
    job = app.tasks.steps(400, 0.05)
    page.goto(base + "/")
    row = page.locator("#running tr[data-job='%s']" % job.id)
    row.locator("button[data-action=cancel]").click()
    wait_for(lambda: app.job(job.id, history=False).state == "cancelled", 20,
             message="the job to stop")
    row.wait_for(state="detached")
    assert "cancelling: running on thread worker" in page.locator("#flash").inner_text()


def test_retry_a_failed_job(site, page):
    app, base = site
    failed = app.tasks.fail("boom")
    wait_for(lambda: app.job(failed.id, history=False).state == "failed", 20,
             message="the failure")
    page.goto(base + "/")
    row = page.locator("#failures tr[data-job='%s']" % failed.id)
    # The row may show before the store has the error; it fills in live.
    from playwright.sync_api import expect
    expect(row).to_contain_text("ValueError('boom')", timeout=20_000)
    row.locator("button[data-action=retry]").click()
    wait_for(lambda: app.job(failed.id, history=False).attempts == 2, 20,
             message="the second attempt")
    page.goto(base + "/jobs/%s" % failed.id)
    page.locator("#history tbody tr").first.wait_for()
    assert "retried" in page.locator("#history").inner_text()


def test_task_arguments_are_shown_as_text(site, page):
    app, base = site
    evil = app.tasks.echo("<script>alert(1)</script>")
    wait_for(lambda: app.job(evil.id, history=False).state == "complete", 20,
             message="the job")
    page.goto(base + "/jobs/%s" % evil.id)
    args = page.locator("#job-args pre")
    args.wait_for()
    assert args.inner_text() == "'<script>alert(1)</script>'"
    page.locator("#job-result pre").wait_for()
    assert "<script>alert(1)</script>" in page.locator("#job-result pre").inner_text()
    assert page.locator("script").count() == 1      # only hueyq.js
    shot(page, "job.png")
    page.goto(base + "/")
    page.wait_for_selector("article.card[data-queue=high]")
    assert page.dialogs == []


def test_readable_on_a_phone(site, page):
    app, base = site
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(base + "/")
    page.wait_for_selector("article.card[data-queue=high]")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the page scrolls sideways (%dpx wide)" % width
    shot(page, "dashboard-phone.png")
