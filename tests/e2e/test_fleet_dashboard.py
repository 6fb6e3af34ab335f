"""The dashboard over a fleet of 50,000 jobs, in a real headless Chromium against the local stack:
it loads one page, not the fleet; stalled and failing jobs come first; the totals cover every job;
a filter and the next page work; and every refresh makes a few requests, bounded by the page."""

import asyncio
import re
from datetime import UTC, datetime

import pytest

from shared.config import Settings
from shared.store import CountsStore
from tests.e2e.test_dashboard import until
from tools.browser import chromium, open_dashboard
from tools.fleetseed import Fleet, job_id_of, seed
from tools.stack import READ_KEY, Stack

pytestmark = pytest.mark.e2e
FLEET = Fleet(jobs=50_000, active=1_000, stalled=4, failing=3)
PAGE_SIZE = 50  # web/app.js
REQUESTS_PER_REFRESH = 3  # totals, the jobs that need attention, the page


@pytest.fixture(scope="module")
def stack():
    with Stack(validation_schedule="0 0 0 1 1 *", service_log=False, task_sync_schedule=None) as running:
        settings = Settings.from_env(
            {"AzureWebJobsStorage": running.azurite.connection_string, "COUNTS_TABLE_PREFIX": running.table_prefix}
        )

        async def seeded() -> None:
            store = CountsStore.from_settings(settings)
            try:
                await seed(store, FLEET, (None,), datetime.now(UTC))
            finally:
                await store.close()

        asyncio.run(seeded())
        yield running


@pytest.fixture(scope="module")
async def page(stack):
    async with chromium() as browser:
        opened = await open_dashboard(browser, stack.app_url, READ_KEY)
        api_requests: list[str] = []
        opened.on("request", lambda request: api_requests.append(request.url) if "/api/" in request.url else None)
        opened.api_requests = api_requests
        yield opened
        await opened.close()


async def ids_on(page, where: str) -> list[str]:
    """The jobs whose cards a section shows, read at one moment (a refresh replaces the cards)."""
    return await page.eval_on_selector_all(f"#{where} article.card", "cards => cards.map((c) => c.dataset.job)")


async def refreshes(page) -> int:
    return int(await page.get_attribute("body", "data-refreshes") or 0)


async def requests_of_one_refresh(page) -> int:
    """The /api/ requests the browser makes between one refresh's end and the next one's."""
    start = await refreshes(page)
    await until(lambda: _reached(page, start + 1), 30, "a refresh")
    before = len(page.api_requests)
    await until(lambda: _reached(page, start + 2), 30, "another refresh")
    return len(page.api_requests) - before


async def _reached(page, count: int) -> bool:
    return await refreshes(page) >= count


async def test_first_paint_shows_the_totals_the_alerts_first_and_one_page(page):
    await page.wait_for_selector('#totals [data-total="jobs"]')
    assert await page.text_content('#totals [data-total="jobs"]') == "50,000"
    assert await page.text_content('#totals [data-total="stalled"]') == str(FLEET.stalled)
    attention = await ids_on(page, "attention")
    assert sorted(attention) == [job_id_of(n) for n in range(FLEET.stalled + FLEET.failing)]
    listed = await ids_on(page, "page")
    assert 0 < len(listed) <= PAGE_SIZE and not set(listed) & set(attention)
    assert await page.locator("article.card").count() <= PAGE_SIZE + 12  # one page, not the fleet
    per_refresh = await requests_of_one_refresh(page)
    assert per_refresh <= REQUESTS_PER_REFRESH
    assert int(await page.get_attribute("body", "data-requests")) == REQUESTS_PER_REFRESH


async def test_a_filter_and_the_next_page(page):
    await page.select_option('#filters select[name="state"]', "finished")
    await page.wait_for_function("location.hash.includes('state=finished')")
    await until(lambda: _all_finished(page), 30, "finished jobs only")
    first = await ids_on(page, "page")
    assert len(first) == PAGE_SIZE and await ids_on(page, "attention") == []
    await page.click("#older")
    await until(lambda: _page_shown(page, 2), 30, "the second page")
    second = await ids_on(page, "page")
    assert len(second) == PAGE_SIZE and not set(first) & set(second)
    assert all(int(job.split("-")[1]) >= FLEET.active for job in second)  # still finished ones
    assert await requests_of_one_refresh(page) <= REQUESTS_PER_REFRESH - 1  # totals and the page
    await page.click("#newer")
    await until(lambda: _page_shown(page, 1), 30, "the first page again")
    assert await ids_on(page, "page") == first


async def test_a_job_id_prefix_lists_those_jobs_by_id(page):
    await page.goto(page.url.split("#")[0] + "#jobs?prefix=job-0004")
    await until(lambda: _prefixed(page, "job-0004"), 30, "the jobs starting job-0004")
    expected = sorted(job_id_of(n) for n in range(FLEET.jobs) if job_id_of(n).startswith("job-0004"))[:PAGE_SIZE]
    assert await ids_on(page, "page") == expected  # by id: job-00040 ... job-00049, job-00400 ...


async def _all_finished(page) -> bool:
    ids = await ids_on(page, "page")
    return bool(ids) and all(int(job.split("-")[1]) >= FLEET.active for job in ids)


async def _page_shown(page, number: int) -> bool:
    return await page.text_content('.pager [data-field="page"]') == f"page {number}"


async def _prefixed(page, prefix: str) -> bool:
    ids = await ids_on(page, "page")
    return bool(ids) and all(re.match(prefix, job) for job in ids)
