"""Which Batch account a record came from, pure.

A diagnostic setting of any Batch account can stream to the same event hub, so every service-log
record names its account in ``resourceId`` (the account's ARM id, upper-cased by Azure Monitor:
``/SUBSCRIPTIONS/{id}/RESOURCEGROUPS/{group}/PROVIDERS/MICROSOFT.BATCH/BATCHACCOUNTS/{name}``). A
record is counted only for an account this deployment is configured with; any other account's
records are ignored and reported (``shared.ingest``), never merged into a job that happens to share
their job id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shared.errors import ConfigError

# A Batch account name: 3-24 lower-case letters and digits.
ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")
_RESOURCE_ID = re.compile(
    r"/subscriptions/(?P<subscription>[^/]+)/resourcegroups/(?P<group>[^/]+)"
    r"/providers/microsoft\.batch/batchaccounts/(?P<name>[^/]+)/?",
    re.IGNORECASE,
)
MAX_RESOURCE_ID = 1024
# Between an account's name and a job id in a job's key: neither a Batch id nor an account name holds it.
ACCOUNT_SEPARATOR = "~"


def job_key_of(account: str | None, job_id: str) -> str:
    """The store's key of a job: its id lower-cased (Batch ids ignore case), after its account's name
    for any account but the default (None), whose jobs keep the keys they had before a deployment
    counted several accounts -- so an upgrade keeps its data and URLs."""
    return job_id.lower() if account is None else f"{account}{ACCOUNT_SEPARATOR}{job_id.lower()}"


def account_of_job_key(job_key: str) -> str | None:
    """The account a job's key names (None: the default account)."""
    account, separator, _ = job_key.partition(ACCOUNT_SEPARATOR)
    return account if separator else None


class MalformedResourceIdError(ValueError):
    """A ``resourceId`` that is not a Batch account's ARM id."""


class UnknownAccountError(LookupError):
    """An account name this deployment is not configured with."""


@dataclass(frozen=True)
class AccountId:
    """A Batch account's ARM id, compared without regard to case (Azure Monitor upper-cases it)."""

    subscription: str
    resource_group: str
    name: str

    @classmethod
    def parse(cls, text: object) -> AccountId:
        if not isinstance(text, str) or len(text) > MAX_RESOURCE_ID:
            raise MalformedResourceIdError("resourceId must be a Batch account's ARM id")
        match = _RESOURCE_ID.fullmatch(text.strip())
        if match is None:
            shown = text.strip()[:200]
            raise MalformedResourceIdError(f"resourceId {shown!r} is not a Batch account's ARM id")
        return cls(match["subscription"].lower(), match["group"].lower(), match["name"].lower())

    def __str__(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Batch/batchAccounts/{self.name}"
        )


@dataclass(frozen=True)
class BatchAccount:
    """An account this deployment counts: its name; its ARM id where configured (without one, a
    record is matched by the account name its ARM id ends with); its endpoint, where Batch can be
    asked; its shared key, where one is used (None: Microsoft Entra ID)."""

    name: str
    resource_id: AccountId | None = None
    url: str | None = None
    key: str | None = field(default=None, repr=False)

    def emitted(self, source: AccountId) -> bool:
        return source == self.resource_id if self.resource_id is not None else source.name == self.name


def account_of(
    url: str | None, name: str | None, resource_id: str | None, key: str | None = None
) -> BatchAccount | None:
    """The configured account (settings ``BATCH_ACCOUNT_URL``, ``_NAME``, ``_RESOURCE_ID``, ``_KEY``),
    or None when none is. Its name is ``BATCH_ACCOUNT_NAME`` or the name in the ARM id (they must
    agree), else the first label of the URL's host."""
    parsed_id = None
    if resource_id:
        try:
            parsed_id = AccountId.parse(resource_id)
        except MalformedResourceIdError as error:
            raise ConfigError(f"BATCH_ACCOUNT_RESOURCE_ID: {error}") from None
    host = (urlsplit(url).hostname or "").lower() if url else ""
    # {account}.{region}.batch.azure.com (or another cloud's): not a loopback name or an IP address
    from_url = host.split(".")[0] if host.count(".") >= 2 and not host.replace(".", "").isdigit() else ""
    names = {
        source: value
        for source, value in (
            ("BATCH_ACCOUNT_NAME", (name or "").lower()),
            ("BATCH_ACCOUNT_RESOURCE_ID", parsed_id.name if parsed_id else ""),
        )
        if value
    }
    if len(set(names.values())) > 1:
        raise ConfigError(f"the Batch account's name differs between {' and '.join(names)}: {names}")
    chosen = next(iter(names.values()), "") or (from_url if ACCOUNT_NAME.fullmatch(from_url) else "")
    if not chosen:
        if url or parsed_id:  # e.g. a simulator on 127.0.0.1: its name must be given
            raise ConfigError("set BATCH_ACCOUNT_NAME: the Batch account's name cannot be read from its URL")
        return None
    return BatchAccount(chosen, parsed_id, (url or "").rstrip("/") or None, key or None)


def extra_accounts_of(text: str | None, env: Mapping[str, str]) -> tuple[BatchAccount, ...]:
    """The accounts counted besides the default one (setting ``BATCH_EXTRA_ACCOUNTS``): a JSON list of
    ``{"name", "url", "resourceId", "keySetting"}`` -- ``keySetting`` names the app setting holding
    the account's shared key (a Key Vault reference there keeps it out of this one); without it,
    Microsoft Entra ID."""
    if not text or not text.strip():
        return ()
    try:
        items = json.loads(text)
    except ValueError:
        raise ConfigError("BATCH_EXTRA_ACCOUNTS must be a JSON list of accounts") from None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ConfigError('BATCH_EXTRA_ACCOUNTS must be a JSON list of {"name", "url", "resourceId"} objects')
    accounts = []
    for number, item in enumerate(items):
        where = f"BATCH_EXTRA_ACCOUNTS[{number}]"
        unknown = set(item) - {"name", "url", "resourceId", "keySetting"}
        if unknown:
            raise ConfigError(f"{where} has fields this app does not read: {sorted(unknown)}")
        name, url = item.get("name"), item.get("url")
        if not isinstance(name, str) or not ACCOUNT_NAME.fullmatch(name.lower()):
            raise ConfigError(f"{where}.name must be a Batch account's name: 3-24 letters and digits")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ConfigError(
                f"{where}.url must be the account's endpoint, e.g. https://{name.lower()}.westeurope.batch.azure.com"
            )
        key_setting = item.get("keySetting")
        key = None
        if key_setting is not None:
            key = env.get(key_setting) if isinstance(key_setting, str) else None
            if not key:
                raise ConfigError(f"{where}.keySetting names {key_setting!r}, which is not set")
            if key.strip().lower().startswith("@microsoft.keyvault("):
                raise ConfigError(
                    f"{key_setting} (the key of {where}) is an unresolved Key Vault reference: grant the app's "
                    "identity 'Key Vault Secrets User' on the vault, or set the key itself"
                )
        try:
            account = account_of(url, name, item.get("resourceId"), key)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
        if account is not None:
            accounts.append(account)
    return tuple(accounts)


@dataclass(frozen=True)
class Accounts:
    """The accounts this deployment counts, the first being the default."""

    accounts: tuple[BatchAccount, ...] = ()

    def __post_init__(self) -> None:
        names = [account.name for account in self.accounts]
        if len(set(names)) != len(names):
            raise ConfigError(f"two Batch accounts share a name: {names}; each name addresses one account")

    @property
    def default(self) -> BatchAccount | None:
        return self.accounts[0] if self.accounts else None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(account.name == name.lower() for account in self.accounts)

    def named(self, name: str) -> BatchAccount:
        """The account of that name; UnknownAccountError for any other."""
        for account in self.accounts:
            if account.name == name.lower():
                return account
        raise UnknownAccountError(f"no Batch account {name[:64]!r} is configured")

    def emitter(self, resource_id: object) -> BatchAccount | None:
        """The configured account that emitted a record with this ``resourceId``; None for any
        other account. MalformedResourceIdError for a value that is no Batch account's ARM id."""
        source = AccountId.parse(resource_id)
        return next((account for account in self.accounts if account.emitted(source)), None)

    def key_name(self, account: BatchAccount) -> str | None:
        """How job keys name an account: None for the default one (see ``job_key_of``)."""
        return None if account == self.default else account.name
