"""The one place that reads the environment.

Every name here is an app setting: the same names appear in local.settings.example.json,
the README's configuration table and the Bicep app settings.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

from shared.errors import ConfigError

STORAGE_CONNECTION = "AzureWebJobsStorage"
STORAGE_TABLE_URI = "AzureWebJobsStorage__tableServiceUri"
STORAGE_CLIENT_ID = "AzureWebJobsStorage__clientId"
TABLE_PREFIX = "COUNTS_TABLE_PREFIX"
JOB_PARTITIONS = "JOB_PARTITIONS"

DEFAULT_TABLE_PREFIX = "taskcounts"
DEFAULT_JOB_PARTITIONS = 4
MAX_JOB_PARTITIONS = 256


@dataclass(frozen=True)
class Settings:
    """What the app is configured with; built once from the environment."""

    storage_connection: str | None
    table_service_uri: str | None
    managed_identity_client_id: str | None
    table_prefix: str = DEFAULT_TABLE_PREFIX
    job_partitions: int = DEFAULT_JOB_PARTITIONS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        connection = env.get(STORAGE_CONNECTION) or None
        table_uri = env.get(STORAGE_TABLE_URI) or None
        if connection is None and table_uri is None:
            raise ConfigError(
                f"set {STORAGE_CONNECTION} (a connection string) or {STORAGE_TABLE_URI} "
                "(identity-based access)"
            )
        prefix = env.get(TABLE_PREFIX, DEFAULT_TABLE_PREFIX)
        if not (prefix.isascii() and prefix.isalnum() and prefix[:1].isalpha() and len(prefix) <= 40):
            raise ConfigError(f"{TABLE_PREFIX} must be 1-40 letters and digits starting with a letter")
        return cls(
            storage_connection=connection,
            table_service_uri=table_uri,
            managed_identity_client_id=env.get(STORAGE_CLIENT_ID) or None,
            table_prefix=prefix,
            job_partitions=_int_setting(env, JOB_PARTITIONS, DEFAULT_JOB_PARTITIONS, 1, MAX_JOB_PARTITIONS),
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
