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
        tab.accept_dialogs = False
        tab.on("dialog", lambda dialog: (
            tab.dialogs.append(dialog.message),
            dialog.accept() if tab.accept_dialogs else dialog.dismiss()))
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
    host = page.locator("#hosts tbody tr[data-host='%s']" % app.host_id)
    assert host.locator("td").nth(1).inner_text() == "alive"
    assert "ago" in host.locator("td").nth(2).inner_text()
    assert "high ×1" in host.locator("td").nth(3).inner_text()
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


# ---------------------------------------------------------------- health

@pytest.fixture
def web_beside(tmp_path, app_name, make_app, runtime):
    """`hueyq web` (gunicorn) on its own, and a runtime the test may kill
    and start again."""
    import signal
    import subprocess
    import sys
    port = free_port()
    profile = write_profile(
        tmp_path / "ui.toml", "sqlite://%s" % (tmp_path / "queue.db"),
        "sqlite://%s" % (tmp_path / "store.db"), app_name,
        {"web": {"bind": "127.0.0.1:%d" % port, "workers": 1}})
    app = make_app(profile)
    env = dict(os.environ, PYTHONPATH=str(HERE), HUEYQ_PROFILE=str(profile))
    log = open(tmp_path / "web.log", "ab")
    web = subprocess.Popen([sys.executable, "-m", "hueyq", "web", "--app",
                            "apps.basic"], env=env, cwd=tmp_path, stdout=log,
                           stderr=subprocess.STDOUT, start_new_session=True)
    base = "http://127.0.0.1:%d" % port
    yield app, base, profile, web
    if web.poll() is None:
        os.killpg(web.pid, signal.SIGKILL)
        web.wait(10)
    log.close()


def test_the_header_says_live_only_with_a_live_runtime(web_beside, page,
                                                       runtime):
    import signal
    app, base, profile, web = web_beside
    rt = runtime(profile)
    rt.wait_ready()
    wait_for(lambda: _status(base + "/api/health") == 200, 30,
             message="a healthy runtime")
    page.goto(base + "/")
    live = page.locator("#live")
    banner = page.locator("#health-banner")
    from playwright.sync_api import expect
    expect(live).to_have_text("live", timeout=20_000)
    assert banner.is_hidden()
    rt.kill_all()
    expect(live).to_have_text("runtime down", timeout=30_000)
    expect(banner).to_be_visible()
    assert "/api/health answers 503" in banner.inner_text()
    assert "no runtime alive" in banner.inner_text()
    assert "bad" in live.get_attribute("class")
    shot(page, "health-banner.png")
    rt2 = runtime(profile)
    rt2.wait_ready()
    expect(live).to_have_text("live", timeout=30_000)
    expect(banner).to_be_hidden()
    web.send_signal(signal.SIGTERM)
    web.wait(15)
    expect(live).to_have_text("reconnecting", timeout=20_000)
    assert rt2.terminate() == 0


def test_a_503_health_shows_its_reasons_on_every_page(web_beside, page):
    app, base, _, _ = web_beside
    wait_for(lambda: _status(base + "/api/health") == 503, 30,
             message="the web server")
    from playwright.sync_api import expect
    job = app.tasks.echo(1)
    for path in ("/", "/jobs", "/queues/high", "/jobs/" + job.id):
        page.goto(base + path)
        expect(page.locator("#health-banner")).to_contain_text(
            "no runtime alive", timeout=20_000)
        assert page.locator("#live").inner_text() != "live"


def _status(url):
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


# ---------------------------------------------------------------- operators

def _fail_many(app, count, message="boom"):
    jobs = [app.tasks.fail("%s %d" % (message, i)) for i in range(count)]
    wait_for(lambda: app.count_jobs(state="failed") >= count, 60,
             message="%d failures" % count)
    return jobs


def test_search_page_and_bulk_retry_with_a_count(site, page):
    from playwright.sync_api import expect
    app, base = site
    failed = _fail_many(app, 53, "Disk full")
    done = app.tasks.echo("fine")
    wait_for(lambda: app.job(done.id, history=False).state == "complete", 20,
             message="the echo")
    page.goto(base + "/jobs")
    form = page.locator("#search")
    form.locator("select[name=state]").select_option("failed")
    form.locator("input[name=task]").fill("fail")
    form.locator("input[name=error]").fill("disk")
    form.locator("button[data-action=search]").click()
    page.wait_for_url("**/jobs?*state=failed*")
    rows = page.locator("#jobs tbody tr")
    expect(rows).to_have_count(50)
    assert rows.first.get_attribute("data-job") == failed[-1].id
    page.locator("#next-page").click()
    expect(rows).to_have_count(3)
    assert {rows.nth(i).get_attribute("data-job") for i in range(3)} == \
        {j.id for j in failed[:3]}
    page.locator("#first-page").click()
    expect(rows).to_have_count(50)
    page.accept_dialogs = True
    with page.expect_event("dialog"):
        page.locator("button[data-action=bulk-retry]").click()
    expect(page.locator("#flash")).to_contain_text("53 of 53 failed jobs "
                                                   "retried")
    assert page.dialogs[-1] == "Retry 53 failed jobs matching task=fail " \
        "error=disk?"
    wait_for(lambda: all(app.job(j.id, history=False).attempts == 2
                         for j in failed), 60, message="the retries to run")
    events = app.store.watchdog_events(limit=1)
    assert events[0]["action"] == "retry"
    shot(page, "jobs-search.png")


def test_bulk_delete_asks_with_the_count_and_can_be_refused(site, page):
    from playwright.sync_api import expect
    app, base = site
    failed = _fail_many(app, 4)
    page.goto(base + "/jobs?state=failed")
    expect(page.locator("#jobs tbody tr")).to_have_count(4)
    with page.expect_event("dialog"):
        page.locator("button[data-action=bulk-delete]").click()  # dismissed
    assert page.dialogs[-1].startswith("Delete 4 failed jobs?")
    assert app.count_jobs(state="failed") == 4
    page.accept_dialogs = True
    with page.expect_event("dialog"):
        page.locator("button[data-action=bulk-delete]").click()
    expect(page.locator("#flash")).to_contain_text("4 of 4 failed jobs deleted")
    assert app.count_jobs(state="failed") == 0
    for job in failed:
        from hueyq.exceptions import JobNotFound
        with pytest.raises(JobNotFound):
            app.job(job.id)
    page.reload()
    expect(page.locator("#jobs-empty")).to_be_visible()


def test_chart_windows_have_axes_and_units(site, page):
    from playwright.sync_api import expect
    app, base = site
    for i in range(6):
        app.tasks.echo(i)
    page.goto(base + "/")
    card = page.locator("article.card[data-queue=high]")
    chart = card.locator("svg.chart").first
    expect(chart).to_have_attribute("aria-label", __import__("re").compile(
        r"Throughput over the last 1h: [1-9]\d* complete, 0 failed"),
        timeout=30_000)
    assert card.locator("svg.chart text.unit").first.text_content() == \
        "throughput, jobs/min"
    assert card.locator("svg.chart").nth(1).locator("text.unit"
                                                    ).text_content() == \
        "run time: mean, longest"
    assert card.locator("svg.chart").first.locator("text.y").count() == 3
    assert card.locator("svg.chart").first.locator("text.x").count() == 3
    for window, unit in (("24h", "jobs/15 min"), ("7d", "jobs/h")):
        page.locator(".window button[data-window='%s']" % window).click()
        expect(chart.locator("text.unit")).to_have_text(
            "throughput, " + unit)
        expect(chart).to_have_attribute("aria-label", __import__("re").compile(
            "over the last %s: [1-9]" % window))
        assert page.locator(".window button[data-window='%s']" % window
                            ).get_attribute("aria-pressed") == "true"
    shot(page, "charts-7d.png")


def test_every_control_is_reachable_on_a_phone(site, page):
    from playwright.sync_api import expect
    app, base = site
    page.set_viewport_size({"width": 390, "height": 844})
    failed = _fail_many(app, 3)

    def fits(name):
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, "%s scrolls sideways (%dpx wide)" % (name, width)
        shot(page, name + "-390.png")

    page.goto(base + "/")
    card = page.locator("article.card[data-queue=low]")
    card.wait_for()
    for window in ("24h", "7d", "1h"):
        page.locator(".window button[data-window='%s']" % window).click()
    card.locator("button[data-action=pause]").click()
    card.locator("button[data-action=resume]").click()
    card.locator("button[data-action=pause]").wait_for()
    with page.expect_event("dialog"):
        card.locator("button[data-action=drain]").click()  # asks; dismissed
    assert page.dialogs[-1] == "Cancel every pending job of low?"
    row = page.locator("#failures tr[data-job='%s']" % failed[0].id)
    row.locator("button[data-action=retry]").click()
    # The retried task fails again at once: the flash names its state then.
    again = __import__("re").compile(r"%s is \w+ again" % failed[0].id[:8])
    expect(page.locator("#flash")).to_contain_text(again)
    wait_for(lambda: app.job(failed[0].id, history=False).attempts == 2, 20,
             message="the retry to run")
    fits("dashboard")
    page.locator("#all-failed").click()
    page.wait_for_url("**/jobs?state=failed")
    form = page.locator("#search")
    for name in ("task", "id", "error"):
        form.locator("input[name=%s]" % name).click()
    form.locator("input[name=since]").click()
    form.locator("input[name=until]").click()
    form.locator("select[name=queue]").select_option("low")
    form.locator("button[data-action=search]").click()
    page.wait_for_url("**queue=low**")
    for action in ("retry", "delete"):                        # dismissed
        with page.expect_event("dialog"):
            page.locator("button[data-action=bulk-%s]" % action).click()
        assert page.dialogs[-1].startswith(action.capitalize() + " ")
        assert "failed jobs matching queue=low" in page.dialogs[-1]
    fits("jobs")
    page.locator("a[data-action=clear]").click()
    page.locator(".nav a", has_text="Dashboard").click()
    page.wait_for_url(base + "/")
    page.goto(base + "/queues/low")
    page.locator(".tabs a[data-state=failed]").click()
    page.wait_for_url("**state=failed**")
    page.locator(".window button[data-window='24h']").click()
    fits("queue")
    page.goto(base + "/jobs/%s" % failed[1].id)
    page.locator("#job-actions button[data-action=retry]").click()
    expect(page.locator("#flash")).to_contain_text(__import__("re").compile(
        r"%s is \w+ again" % failed[1].id[:8]))
    fits("job")
