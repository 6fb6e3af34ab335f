"""Test tiers: unit (pure), functional (shared/ and function folders against a real Azurite),
e2e (processes over HTTP). Azurite is started once per session on a free loopback port."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the Functions host puts the app root on sys.path; so do we
    sys.path.insert(0, str(REPO))

from shared.config import Settings  # noqa: E402
from shared.store import CountsStore  # noqa: E402
from tools.azurite import Azurite  # noqa: E402

_prefixes = itertools.count(1)


@pytest.fixture(scope="session")
def azurite():
    with Azurite() as server:
        yield server


def make_settings(azurite: Azurite, **overrides) -> Settings:
    """Settings for an isolated set of tables (a fresh prefix per call). Counts are read afresh on every
    request (COUNTS_MAX_AGE_MS=0), so a test sees its own writes at once; the recent-read window is
    tested on its own (tests/unit/test_recent.py, test_functions.py) and runs at its default in the
    local stack (tests/e2e)."""
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "COUNTS_TABLE_PREFIX": f"t{os.getpid()}n{next(_prefixes)}",
        "COUNTS_MAX_AGE_MS": "0",
    }
    env.update({key: str(value) for key, value in overrides.items()})
    return Settings.from_env(env)


@pytest.fixture
def settings(azurite):
    return make_settings(azurite)


@pytest.fixture
async def store(settings):
    counts_store = CountsStore.from_settings(settings)
    yield counts_store
    await counts_store.close()


APP_VALIDATION_MAX_TASKS = 15_000


@pytest.fixture(scope="session")
async def simulator():
    """A Batch simulator on a free loopback port: (account, base URL)."""
    from tools.azurite import free_port
    from tools.batchsim.model import BatchAccount
    from tools.batchsim.server import serve

    account, port = BatchAccount(), free_port()
    runner = await serve(account, "127.0.0.1", port)
    yield account, f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture(scope="session")
async def app_settings(azurite, simulator):
    """The environment the function folders read, as the host would set it from app settings."""
    from shared.batch import close_batch
    from shared.config import get_settings
    from shared.store import close_store
    from tools.batchsim.server import DEFAULT_ACCOUNT, DEFAULT_KEY
    from tools.stack import ACCESS_KEYS

    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "COUNTS_TABLE_PREFIX": f"app{os.getpid()}",
        "BATCH_ACCOUNT_URL": simulator[1],
        "BATCH_ACCOUNT_NAME": DEFAULT_ACCOUNT,
        "BATCH_ACCOUNT_KEY": DEFAULT_KEY,
        "VALIDATION_MAX_TASKS": str(APP_VALIDATION_MAX_TASKS),
        "JOB_PARTITIONS": "2",  # every job spread over partitions, as large jobs are
        **ACCESS_KEYS,
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    get_settings.cache_clear()
    yield get_settings()
    await close_store()
    await close_batch()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()


class AppServer:
    """The function folders served over HTTP by tools.funchost (in this test process); ``headers``
    carry the read key, ``ingest_headers`` and ``operate_headers`` the others (tools.stack's keys)."""

    def __init__(self, app, url, local):
        from tools.stack import INGEST_KEY, OPERATE_KEY, READ_KEY

        self.app, self.url, self.local = app, url, local
        self.headers = {"x-functions-key": READ_KEY}
        self.ingest_headers = {"x-functions-key": INGEST_KEY}
        self.operate_headers = {"x-functions-key": OPERATE_KEY}


@pytest.fixture(scope="module")
async def app_server(app_settings):
    from tools.azurite import free_port
    from tools.funchost import FunctionApp, Keys, serve, stop
    from tools.stack import MASTER_KEY

    function_app, port = FunctionApp.load(), free_port()
    runner, local = await serve(function_app, Keys(master=MASTER_KEY), "127.0.0.1", port)
    yield AppServer(function_app, f"http://127.0.0.1:{port}", local)
    await stop(runner, local)
