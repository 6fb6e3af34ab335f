"""Headless Chromium (Debian's ``chromium``, installed by ``./dev setup``) driven by Playwright,
for the browser tests and the dashboard's screenshot (docs/dashboard.png). Playwright's own browser download is never
used: it cannot run here, and Debian's build is what CI installs."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Browser, Page, async_playwright

# Quiet, sandbox-free flags: CI runs as root, and a closed network refuses Chromium's background calls.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("no chromium on PATH: run ./dev setup (it installs Debian's chromium package)")
    return path


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


async def open_dashboard(
    browser: Browser, app_url: str, function_key: str, viewport: tuple[int, int] = (1280, 800)
) -> Page:
    """A page on the dashboard with the key entered as a person would (it never goes into a URL)."""
    page = await browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    await page.goto(f"{app_url}/api/dashboard")
    await page.fill("#key", function_key)
    await page.click("#key-form button[type=submit]")
    await page.wait_for_selector("#jobs:not([hidden]), #job:not([hidden])")
    return page
