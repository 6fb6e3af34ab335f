"""The web dashboard in a real headless Chromium (Debian's chromium, driven by Playwright) against the
local stack: Azurite, the Batch simulator and the function host, as a person would use it."""

import asyncio
import re
import struct
import time

import pytest
import requests

from shared.config import DEFAULT_COUNTS_MAX_AGE_MS
from tests.cli.run import run_cli
from tools.browser import chromium, open_dashboard
from tools.screenshot import capture
from tools.stack import INGEST_KEY, OPERATE_KEY, READ_KEY, Stack

pytestmark = pytest.mark.e2e
KEYED = {"x-functions-key": READ_KEY}
INGESTING = {"x-functions-key": INGEST_KEY}
OPERATING = {"x-functions-key": OPERATE_KEY}
REFRESH_SECONDS = 5  # web/app.js REFRESH_MS
STATES = ("active", "running", "succeeded", "failed")


def publish(stack):
    stack.control("publish", {"url": f"{stack.app_url}/api/taskevents", "headers": INGESTING})


def api_counts(stack, job_id):
    response = requests.get(f"{stack.app_url}/api/jobs/{job_id}/taskcounts", headers=KEYED, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def stack():
    with Stack(
        validation_schedule="0 0 0 1 1 *",
        service_log=False,
        task_sync_schedule=None,
        progress_schedule="* * * * * *",
        stall_minutes=1,
    ) as running:
        # A job that moves once, then never again: its stall clock starts here; the stall test runs last.
        running.control("jobs", {"id": "Stopped", "tasks": 40})
        running.control("jobs/Stopped/step", {"moves": 30, "seed": 3})
        publish(running)
        yield running


@pytest.fixture(scope="module")
async def browser():
    async with chromium() as running:
        yield running


@pytest.fixture(scope="module")
async def page(stack, browser):
    opened = await open_dashboard(browser, stack.app_url, READ_KEY)
    yield opened
    await opened.close()


async def card_counts(page, job_id) -> dict[str, int] | None:
    card = page.locator(f'article[data-job="{job_id}"]')
    if await card.count() == 0:
        return None
    return {
        state: int(re.sub(r"\D", "", await card.locator(f'[data-field="{state}"]').text_content())) for state in STATES
    }


async def until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def shown(counts: dict) -> dict[str, int]:
    return {state: counts["taskCounts"][state] for state in STATES}


async def test_the_page_asks_for_a_read_key_and_never_puts_a_key_in_a_url_log_or_message(stack, browser):
    context = await browser.new_context()
    page = await context.new_page()
    requested, said = [], []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda message: said.append(message.text))
    page.on("pageerror", lambda error: said.append(str(error)))
    try:
        await page.goto(f"{stack.app_url}/api/dashboard")
        assert page.url == f"{stack.app_url}/api/dashboard/"  # redirected: relative links reach the API
        await page.wait_for_selector("#key-form:not([hidden])")
        assert not await page.is_visible("#jobs")
        for refused in ("not-a-key-of-this-app", INGEST_KEY):  # the ingest key cannot read
            await page.fill("#key", refused)
            await page.click("#key-form button[type=submit]")
            await page.wait_for_selector("#status.error")
            assert "not a read key" in await page.text_content("#status") and await page.is_visible("#key-form")
            said.append(await page.text_content("#status"))
        await page.fill("#key", READ_KEY)
        await page.click("#key-form button[type=submit]")
        await page.wait_for_selector('article[data-job="Stopped"]')
        assert not await page.is_visible("#key-form")
        keys = (READ_KEY, INGEST_KEY, "not-a-key-of-this-app")
        assert requested and not any(key in text for key in keys for text in requested + said + [page.url])
        # kept for this tab only: a reload keeps it, a new tab of the same browser asks again
        assert await page.evaluate("sessionStorage.getItem('taskcounts.readKey')") == READ_KEY
        assert await page.evaluate("localStorage.length") == 0
        await page.reload()
        await page.wait_for_selector('article[data-job="Stopped"]')
        other_tab = await context.new_page()
        await other_tab.goto(f"{stack.app_url}/api/dashboard/")
        await other_tab.wait_for_selector("#key-form:not([hidden])")
        # asked to remember: a new tab opens without asking; "Forget key" forgets it everywhere
        await other_tab.fill("#key", READ_KEY)
        await other_tab.check("#remember")
        await other_tab.click("#key-form button[type=submit]")
        await other_tab.wait_for_selector('article[data-job="Stopped"]')
        assert await other_tab.evaluate("localStorage.getItem('taskcounts.readKey')") == READ_KEY
        third_tab = await context.new_page()
        await third_tab.goto(f"{stack.app_url}/api/dashboard/")
        await third_tab.wait_for_selector('article[data-job="Stopped"]')
        await third_tab.click("#change-key")
        await third_tab.wait_for_selector("#key-form:not([hidden])")
        assert await third_tab.evaluate("localStorage.length + sessionStorage.length") == 0
    finally:
        await context.close()


async def test_cards_show_the_apis_numbers(page, stack):
    stack.control("jobs", {"id": "Shown", "tasks": 300})
    stack.control("jobs/Shown/step", {"moves": 400, "seed": 1})
    publish(stack)

    async def same():
        expected = shown(api_counts(stack, "Shown"))
        return await card_counts(page, "Shown") == expected and sum(expected.values()) > 0

    await until(same, 3 * REFRESH_SECONDS, "the Shown card equal to GET taskcounts")


async def test_a_change_shows_within_one_refresh(page, stack):
    before = shown(api_counts(stack, "Shown"))
    stack.control("jobs/Shown/step", {"moves": 200, "seed": 2})
    publish(stack)  # returns once delivered; the API may answer from a read up to COUNTS_MAX_AGE_MS old

    async def api_changed():
        counts = shown(api_counts(stack, "Shown"))
        return counts if counts != before else None

    after = await until(api_changed, DEFAULT_COUNTS_MAX_AGE_MS / 1000 + 1, "GET taskcounts showing the change")
    changed_at = time.monotonic()

    async def follows():
        return await card_counts(page, "Shown") == after

    await until(follows, REFRESH_SECONDS + 2, "the card following the change")
    assert time.monotonic() - changed_at <= REFRESH_SECONDS + 2


async def test_polls_of_unchanged_jobs_are_answered_304(page):
    async def counters():
        return (
            int(await page.get_attribute("body", "data-refreshes")),
            int(await page.get_attribute("body", "data-not-modified")),
        )

    refreshes, unchanged = await counters()
    await until(lambda: _more_refreshes(page, refreshes + 2), 3 * REFRESH_SECONDS, "two more refreshes")
    assert (await counters())[1] > unchanged


async def _more_refreshes(page, at_least: int) -> bool:
    return int(await page.get_attribute("body", "data-refreshes")) >= at_least


async def test_the_job_page_charts_history_and_shows_the_last_validation(page, stack):
    started = requests.post(f"{stack.app_url}/api/jobs/Shown/validate", headers=OPERATING, timeout=10)
    assert started.status_code == 202
    deadline = time.monotonic() + 60
    while (
        requests.get(started.headers["Location"], headers=KEYED, timeout=10).status_code == 202
        and time.monotonic() < deadline
    ):
        await asyncio.sleep(0.3)
    shown = page.locator('article[data-job="Shown"]')
    assert await shown.get_attribute("data-account") == "simaccount"  # each card names its account
    assert await shown.locator('[data-field="account"]').text_content() == "simaccount"
    await page.click('article[data-job="Shown"] h2 a')
    await page.wait_for_selector("#job:not([hidden]) svg.chart polyline.completed")
    assert page.url.endswith("#job/simaccount/Shown")  # the job's page through its account's route
    points = await page.get_attribute("svg.chart polyline.completed", "points")
    assert len(points.split()) >= 2  # a point per change: the creation, then each step
    listed = page.locator('[data-field="last-validation"]')
    await until(lambda: _has_text(listed, "tasks listed"), 3 * REFRESH_SECONDS, "the last validation's summary")
    summary = api_counts(stack, "Shown")["lastValidation"]
    assert f"tasks listed{summary['tasksListed']}" in await listed.text_content()
    badge = page.locator('#job [data-field="validation"]')
    assert (await badge.text_content()).startswith("validated")
    await page.goto(f"{stack.app_url}/api/dashboard/#")
    await page.wait_for_selector("#jobs:not([hidden])")


async def _has_text(locator, text: str) -> bool:
    return await locator.count() > 0 and text in await locator.text_content()


async def test_readable_from_a_phone_to_a_wall_screen(stack, browser):
    for width, height, columns in ((375, 740, 1), (2560, 1440, 2)):
        page = await open_dashboard(browser, stack.app_url, READ_KEY, (width, height))
        try:
            await page.wait_for_selector('article[data-job="Shown"]')
            assert await page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scrolling
            lefts = {
                box["x"] for box in [await card.bounding_box() for card in await page.locator("article.card").all()]
            }
            assert len(lefts) >= columns if columns > 1 else len(lefts) == 1
        finally:
            await page.close()


async def test_the_screenshot_command_writes_the_picture(stack, tmp_path):
    out = await capture(stack.app_url, tmp_path / "dashboard.png", (1024, 700))
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1024 and height >= 700


async def test_a_job_the_simulator_stops_moving_gets_the_stalled_badge(page, stack):
    badge = page.locator('article[data-job="Stopped"] [data-badge="stalled"]')
    await until(lambda: _count_positive(badge), 100, "the stalled badge on the Stopped job")
    assert api_counts(stack, "Stopped")["progress"]["stalledSince"] is not None
    moving = page.locator('article[data-job="Shown"] [data-badge="stalled"]')
    assert await moving.count() == 0 or sum(shown(api_counts(stack, "Shown")).values()) == 0
    log = stack.log_text("funchost")
    assert re.search(r'TASKCOUNTS_ALERT \{"alert":"stalled","jobId":"Stopped"', log)
    # The terminal client shows the same flag, in its job list and for the one job.
    code, out, err = run_cli("--url", stack.app_url, "--key", READ_KEY, "jobs")
    [row] = [line for line in out.splitlines() if "Stopped" in line]
    assert code == 0 and "stalled since" in row, out + err
    code, out, err = run_cli("--url", stack.app_url, "--key", READ_KEY, "get", "Stopped")
    assert code == 0 and "STALLED SINCE" in out and "rate " in out, out + err


async def _count_positive(locator) -> bool:
    return await locator.count() > 0
