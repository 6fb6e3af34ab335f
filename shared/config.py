"""The one place that reads the environment.

Every name here is an app setting: the same names appear in local.settings.example.json,
the README's configuration table and the Bicep app settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from shared.access import Access, AccessMode, AccessPolicy
from shared.accounts import Accounts, account_of, extra_accounts_of
from shared.errors import ConfigError

STORAGE_CONNECTION = "AzureWebJobsStorage"
STORAGE_TABLE_URI = "AzureWebJobsStorage__tableServiceUri"
STORAGE_CLIENT_ID = "AzureWebJobsStorage__clientId"
TABLE_PREFIX = "COUNTS_TABLE_PREFIX"
JOB_PARTITIONS = "JOB_PARTITIONS"
JOB_PARTITION_ROWS = "JOB_PARTITION_ROWS"
BATCH_ACCOUNT_URL = "BATCH_ACCOUNT_URL"
BATCH_ACCOUNT_NAME = "BATCH_ACCOUNT_NAME"
BATCH_ACCOUNT_KEY = "BATCH_ACCOUNT_KEY"
BATCH_ACCOUNT_RESOURCE_ID = "BATCH_ACCOUNT_RESOURCE_ID"
BATCH_EXTRA_ACCOUNTS = "BATCH_EXTRA_ACCOUNTS"
VALIDATION_MAX_TASKS = "VALIDATION_MAX_TASKS"
VALIDATION_PARALLEL_LISTINGS = "VALIDATION_PARALLEL_LISTINGS"
RETENTION_DAYS = "RETENTION_DAYS"
TASK_SYNC_MAX_JOBS = "TASK_SYNC_MAX_JOBS"
TASK_SYNC_MAX_PAGES = "TASK_SYNC_MAX_PAGES"
TASK_SYNC_OVERLAP_SECONDS = "TASK_SYNC_OVERLAP_SECONDS"
PROGRESS_WINDOW_MINUTES = "PROGRESS_WINDOW_MINUTES"
PROGRESS_MAX_POINTS = "PROGRESS_MAX_POINTS"
STALL_MINUTES = "STALL_MINUTES"
FAILURE_ALERT_PERCENT = "FAILURE_ALERT_PERCENT"
COUNTS_MAX_AGE_MS = "COUNTS_MAX_AGE_MS"
BATCH_REQUESTS_PER_SECOND = "BATCH_REQUESTS_PER_SECOND"
WATCH_MINUTES = "WATCH_MINUTES"
ACCESS_MODE = "ACCESS_MODE"
ACCESS_READ_KEYS = "ACCESS_READ_KEYS"
ACCESS_INGEST_KEYS = "ACCESS_INGEST_KEYS"
ACCESS_OPERATE_KEYS = "ACCESS_OPERATE_KEYS"
# Set by App Service itself when its authentication is on: not an app setting anyone writes.
PLATFORM_AUTHENTICATION = "WEBSITE_AUTH_ENABLED"
# Read by the Functions host, not by code: function.json says "%NAME%" (schedules, the hub). Required:
# no code default can reach the host; Bicep and local.settings.example.json set them.
VALIDATION_SCHEDULE = "VALIDATION_SCHEDULE"
TASK_SYNC_SCHEDULE = "TASK_SYNC_SCHEDULE"
PROGRESS_SCHEDULE = "PROGRESS_SCHEDULE"
SUMMARY_SCHEDULE = "SUMMARY_SCHEDULE"
BATCH_LOG_HUB = "BATCH_LOG_HUB"
BATCH_LOG_CONSUMER_GROUP = "BATCH_LOG_CONSUMER_GROUP"
# The Event Hubs connection named "BATCH_LOG" in BatchServiceLogs/function.json: identity-based
# in Azure (these three), a connection string locally (BATCH_LOG itself).
BATCH_LOG_CONNECTION = "BATCH_LOG"
BATCH_LOG_NAMESPACE = "BATCH_LOG__fullyQualifiedNamespace"
BATCH_LOG_CREDENTIAL = "BATCH_LOG__credential"
BATCH_LOG_CLIENT_ID = "BATCH_LOG__clientId"

# Standard proxy variables, not app settings. The Azure clients' aiohttp sessions, told to trust the
# environment, read ~/.netrc and these on every request, each in a thread (two thread hops a request,
# ~15% of the write path's CPU): they are told to only when a proxy is set.
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")

# Every app setting the app reads (code, or the host via function.json).
APP_SETTINGS = (
    STORAGE_CONNECTION,
    STORAGE_TABLE_URI,
    STORAGE_CLIENT_ID,
    TABLE_PREFIX,
    JOB_PARTITIONS,
    JOB_PARTITION_ROWS,
    BATCH_ACCOUNT_URL,
    BATCH_ACCOUNT_NAME,
    BATCH_ACCOUNT_KEY,
    BATCH_ACCOUNT_RESOURCE_ID,
    BATCH_EXTRA_ACCOUNTS,
    VALIDATION_MAX_TASKS,
    VALIDATION_PARALLEL_LISTINGS,
    RETENTION_DAYS,
    TASK_SYNC_MAX_JOBS,
    TASK_SYNC_MAX_PAGES,
    TASK_SYNC_OVERLAP_SECONDS,
    PROGRESS_WINDOW_MINUTES,
    PROGRESS_MAX_POINTS,
    STALL_MINUTES,
    FAILURE_ALERT_PERCENT,
    COUNTS_MAX_AGE_MS,
    BATCH_REQUESTS_PER_SECOND,
    WATCH_MINUTES,
    ACCESS_MODE,
    ACCESS_READ_KEYS,
    ACCESS_INGEST_KEYS,
    ACCESS_OPERATE_KEYS,
    VALIDATION_SCHEDULE,
    TASK_SYNC_SCHEDULE,
    PROGRESS_SCHEDULE,
    SUMMARY_SCHEDULE,
    BATCH_LOG_HUB,
    BATCH_LOG_CONSUMER_GROUP,
    BATCH_LOG_CONNECTION,
    BATCH_LOG_NAMESPACE,
    BATCH_LOG_CREDENTIAL,
    BATCH_LOG_CLIENT_ID,
)

# App Service leaves this text in place when it cannot resolve a reference (no role on the vault, wrong
# identity): read as a value it would be a wrong key or URL, failing far from its cause.
KEY_VAULT_REFERENCE = "@microsoft.keyvault("

DEFAULT_TABLE_PREFIX = "taskcounts"
DEFAULT_JOB_PARTITIONS = 1
DEFAULT_JOB_PARTITION_ROWS = 20_000
MAX_JOB_PARTITIONS = 256
DEFAULT_VALIDATION_MAX_TASKS = 200_000
DEFAULT_VALIDATION_PARALLEL_LISTINGS = 8
DEFAULT_RETENTION_DAYS = 7
DEFAULT_TASK_SYNC_MAX_JOBS = 2000
DEFAULT_TASK_SYNC_MAX_PAGES = 20
DEFAULT_TASK_SYNC_OVERLAP_SECONDS = 30
DEFAULT_PROGRESS_WINDOW_MINUTES = 10
DEFAULT_PROGRESS_MAX_POINTS = 1000
DEFAULT_STALL_MINUTES = 15
DEFAULT_FAILURE_ALERT_PERCENT = 20
DEFAULT_COUNTS_MAX_AGE_MS = 250
# Batch publishes no data-plane rate (it refuses with 429/503 when overloaded): the budget is the
# team's choice. 25 a second leaves room for the team's own clients and reaches 1,000 jobs a minute.
DEFAULT_BATCH_REQUESTS_PER_SECOND = 25
DEFAULT_WATCH_MINUTES = 5
DEFAULT_ACCESS_MODE = AccessMode.KEYS.value


@dataclass(frozen=True)
class Settings:
    """What the app is configured with; built once from the environment."""

    storage_connection: str | None
    table_service_uri: str | None
    managed_identity_client_id: str | None
    table_prefix: str = DEFAULT_TABLE_PREFIX
    job_partitions: int = DEFAULT_JOB_PARTITIONS  # a new job's partitions when Batch cannot size it (the least)
    job_partition_rows: int = DEFAULT_JOB_PARTITION_ROWS  # task rows a partition is sized for
    accounts: Accounts = Accounts()  # the Batch accounts counted (the first is the default)
    validation_max_tasks: int = DEFAULT_VALIDATION_MAX_TASKS
    validation_parallel_listings: int = DEFAULT_VALIDATION_PARALLEL_LISTINGS  # List Tasks pages in flight per job
    retention_days: int = DEFAULT_RETENTION_DAYS
    task_sync_max_jobs: int = DEFAULT_TASK_SYNC_MAX_JOBS  # jobs one sync run reaches
    task_sync_max_pages: int = DEFAULT_TASK_SYNC_MAX_PAGES  # List Tasks pages per job per run
    task_sync_overlap_seconds: int = DEFAULT_TASK_SYNC_OVERLAP_SECONDS  # re-listed window behind a watermark
    progress_window_minutes: int = DEFAULT_PROGRESS_WINDOW_MINUTES  # the window of rates and recent failures
    progress_max_points: int = DEFAULT_PROGRESS_MAX_POINTS  # history points kept per job (older ones thinned)
    stall_minutes: int = DEFAULT_STALL_MINUTES  # tasks left, nothing completed this long: stalled
    failure_alert_percent: int = DEFAULT_FAILURE_ALERT_PERCENT  # recent failures at or above this: failing
    counts_max_age_ms: int = DEFAULT_COUNTS_MAX_AGE_MS  # a job's counts may be answered from a read this recent
    batch_requests_per_second: int = DEFAULT_BATCH_REQUESTS_PER_SECOND  # every Batch call of this process, retries too
    watch_minutes: int = DEFAULT_WATCH_MINUTES  # a job read through the API is kept fresh this long
    access: AccessPolicy = AccessPolicy()  # who may call which HTTP route
    proxy_from_environment: bool = False  # a proxy variable is set: the Azure clients read the environment

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        _refuse_unresolved_references(env)
        connection = env.get(STORAGE_CONNECTION) or None
        table_uri = env.get(STORAGE_TABLE_URI) or None
        if connection is None and table_uri is None:
            raise ConfigError(
                f"set {STORAGE_CONNECTION} (a connection string) or {STORAGE_TABLE_URI} (identity-based access)"
            )
        prefix = env.get(TABLE_PREFIX, DEFAULT_TABLE_PREFIX)
        if not (prefix.isascii() and prefix.isalnum() and prefix[:1].isalpha() and len(prefix) <= 40):
            raise ConfigError(f"{TABLE_PREFIX} must be 1-40 letters and digits starting with a letter")
        batch_key = env.get(BATCH_ACCOUNT_KEY) or None
        batch_name = env.get(BATCH_ACCOUNT_NAME) or None
        if batch_key and not batch_name:
            raise ConfigError(f"{BATCH_ACCOUNT_KEY} needs {BATCH_ACCOUNT_NAME} (shared-key access)")
        account = account_of(env.get(BATCH_ACCOUNT_URL), batch_name, env.get(BATCH_ACCOUNT_RESOURCE_ID), batch_key)
        extra = extra_accounts_of(env.get(BATCH_EXTRA_ACCOUNTS), env)
        if extra and account is None:
            raise ConfigError(f"{BATCH_EXTRA_ACCOUNTS} needs the default account first ({BATCH_ACCOUNT_URL})")
        return cls(
            storage_connection=connection,
            table_service_uri=table_uri,
            managed_identity_client_id=env.get(STORAGE_CLIENT_ID) or None,
            table_prefix=prefix,
            job_partitions=_int_setting(env, JOB_PARTITIONS, DEFAULT_JOB_PARTITIONS, 1, MAX_JOB_PARTITIONS),
            job_partition_rows=_int_setting(env, JOB_PARTITION_ROWS, DEFAULT_JOB_PARTITION_ROWS, 1, 10**7),
            accounts=Accounts((() if account is None else (account,)) + extra),
            validation_max_tasks=_int_setting(env, VALIDATION_MAX_TASKS, DEFAULT_VALIDATION_MAX_TASKS, 1, 10**9),
            validation_parallel_listings=_int_setting(
                env, VALIDATION_PARALLEL_LISTINGS, DEFAULT_VALIDATION_PARALLEL_LISTINGS, 1, 64
            ),
            retention_days=_int_setting(env, RETENTION_DAYS, DEFAULT_RETENTION_DAYS, 1, 3650),
            task_sync_max_jobs=_int_setting(env, TASK_SYNC_MAX_JOBS, DEFAULT_TASK_SYNC_MAX_JOBS, 1, 10_000),
            task_sync_max_pages=_int_setting(env, TASK_SYNC_MAX_PAGES, DEFAULT_TASK_SYNC_MAX_PAGES, 1, 10_000),
            task_sync_overlap_seconds=_int_setting(
                env, TASK_SYNC_OVERLAP_SECONDS, DEFAULT_TASK_SYNC_OVERLAP_SECONDS, 0, 3600
            ),
            progress_window_minutes=_int_setting(
                env, PROGRESS_WINDOW_MINUTES, DEFAULT_PROGRESS_WINDOW_MINUTES, 1, 24 * 60
            ),
            progress_max_points=_int_setting(env, PROGRESS_MAX_POINTS, DEFAULT_PROGRESS_MAX_POINTS, 10, 10_000),
            stall_minutes=_int_setting(env, STALL_MINUTES, DEFAULT_STALL_MINUTES, 1, 7 * 24 * 60),
            failure_alert_percent=_int_setting(env, FAILURE_ALERT_PERCENT, DEFAULT_FAILURE_ALERT_PERCENT, 1, 100),
            counts_max_age_ms=_int_setting(env, COUNTS_MAX_AGE_MS, DEFAULT_COUNTS_MAX_AGE_MS, 0, 5000),
            batch_requests_per_second=_int_setting(
                env, BATCH_REQUESTS_PER_SECOND, DEFAULT_BATCH_REQUESTS_PER_SECOND, 1, 10_000
            ),
            watch_minutes=_int_setting(env, WATCH_MINUTES, DEFAULT_WATCH_MINUTES, 0, 24 * 60),
            access=AccessPolicy.parse(
                env.get(ACCESS_MODE, DEFAULT_ACCESS_MODE),
                {
                    Access.READ: env.get(ACCESS_READ_KEYS, ""),
                    Access.INGEST: env.get(ACCESS_INGEST_KEYS, ""),
                    Access.OPERATE: env.get(ACCESS_OPERATE_KEYS, ""),
                },
                env.get(PLATFORM_AUTHENTICATION, "").strip().lower() == "true",
            ),
            proxy_from_environment=any(env.get(name) or env.get(name.lower()) for name in PROXY_VARIABLES),
        )


def _refuse_unresolved_references(env: Mapping[str, str]) -> None:
    for name in APP_SETTINGS:
        value = env.get(name) or ""
        if value.strip().lower().startswith(KEY_VAULT_REFERENCE):
            raise ConfigError(
                f"{name} is an unresolved Key Vault reference ({value.strip()[:80]}): App Service could not read "
                "the secret. Grant the app's identity 'Key Vault Secrets User' on the vault and make it the site's "
                f"keyVaultReferenceIdentity, or set {name} to the value itself"
            )


def _int_setting(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once (function folders call this)."""
    return Settings.from_env()
