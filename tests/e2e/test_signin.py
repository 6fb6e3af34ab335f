"""The dashboard with Microsoft Entra ID (ACCESS_MODE=entra): it offers to sign in instead of asking
for a key, reads the API with the sign-in session alone, and says when the account lacks the role.

App Service Authentication cannot run here: the browser's requests get the principal header it
would add (a Playwright route stands in for it), and the app's own role checks run for real."""

import pytest
import requests

from tests.sample_files import principal
from tools.browser import chromium
from tools.stack import INGEST_KEY, Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack():
    with Stack(
        access_mode="entra", validation_schedule="0 0 0 1 1 *", service_log=False, task_sync_schedule=None
    ) as running:
        signed_in = {"X-MS-CLIENT-PRINCIPAL": principal("AzureEventGridSecureWebhookSubscriber")}
        running.control("jobs", {"id": "Signed", "tasks": 5})
        running.control("publish", {"url": f"{running.app_url}/api/taskevents", "headers": signed_in})
        yield running


async def signed_in_as(page, *roles: str) -> None:
    """Every API request of the page carries the principal App Service Authentication would pass."""

    async def add_principal(route):
        await route.continue_(headers={**route.request.headers, "x-ms-client-principal": principal(*roles)})

    await page.route("**/api/**", add_principal)


async def test_the_dashboard_signs_in_and_reads_with_the_session_alone(stack):
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"{stack.app_url}/api/dashboard/")
        await page.wait_for_selector("#sign-in:not([hidden])")
        assert not await page.is_visible("#key-form")  # no key is asked for
        link = await page.get_attribute("#sign-in-link", "href")
        assert link == "/.auth/login/aad?post_login_redirect_uri=%2Fapi%2Fdashboard%2F"
        await signed_in_as(page, "TaskCounts.Read")
        await page.reload()
        await page.wait_for_selector('article[data-job="Signed"]')
        assert not await page.is_visible("#key-form") and not await page.is_visible("#change-key")
        await page.close()

        page = await browser.new_page()
        await signed_in_as(page, "TaskCounts.Operate")  # signed in, but not a reader
        await page.goto(f"{stack.app_url}/api/dashboard/")
        await page.wait_for_selector("#sign-in:not([hidden])")
        assert "TaskCounts.Read" in await page.text_content("#status")


def test_keys_open_nothing_in_entra_mode(stack):
    refused = requests.post(
        f"{stack.app_url}/api/taskevents", json=[], headers={"x-functions-key": INGEST_KEY}, timeout=10
    )
    assert refused.status_code == 401 and refused.json()["code"] == "SignInRequired"
    assert refused.headers["WWW-Authenticate"] == "Bearer"
