"""Who may call what: three kinds of access, none of which opens another's routes.

* read: ``GET`` taskcounts, jobs, history (dashboards, the CLI, the SDK);
* ingest: ``POST /api/taskevents`` (the Event Grid subscription);
* operate: ``POST /api/jobs/{jobId}/validate`` (on-demand work).

The HTTP functions are ``authLevel: anonymous`` to the Functions host and every one checks its access
here, first: a function's authLevel is fixed in function.json, and key-level ``function`` would
demand a key even of a caller App Service Authentication has signed in (azure-functions-host#11394).
Two modes (``ACCESS_MODE``):

* ``keys``: the caller shows a key of the route's kind (``x-functions-key`` header or ``?code=``), one
  of ``ACCESS_READ_KEYS`` / ``ACCESS_INGEST_KEYS`` / ``ACCESS_OPERATE_KEYS`` (comma-separated: two
  during a rotation). Host keys open none of these routes; they stay the administrators'.
* ``entra``: App Service Authentication has validated the caller's Microsoft Entra ID token and passes
  its claims as ``X-MS-CLIENT-PRINCIPAL`` (external requests cannot set that header); the caller needs
  the route's app role. The header is trusted only where the platform says authentication is on
  (``WEBSITE_AUTH_ENABLED``), so a misconfigured app refuses rather than believe a forged header.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from shared.errors import ConfigError
from shared.replies import Reply, error

logger = logging.getLogger(__name__)


class Access(Enum):
    READ = "read"
    INGEST = "ingest"
    OPERATE = "operate"


class AccessMode(Enum):
    KEYS = "keys"
    ENTRA = "entra"


# App roles of the app registration (entra mode). Ingest's is the role Event Grid's secure webhook
# delivery requires of its own service principal and of whoever creates the subscription.
APP_ROLES = {
    Access.READ: "TaskCounts.Read",
    Access.INGEST: "AzureEventGridSecureWebhookSubscriber",
    Access.OPERATE: "TaskCounts.Operate",
}
KEY_HEADER = "x-functions-key"
KEY_QUERY = "code"
PRINCIPAL_HEADER = "x-ms-client-principal"
MIN_KEY_LENGTH = 16
MAX_KEY_LENGTH = 256  # generated keys are 43 characters; a longer "key" is refused before any comparison
MAX_PRINCIPAL_BYTES = 64 * 1024
# Claim types a role arrives under: the principal's own role_typ, the token's "roles", or .NET's mapping.
ROLE_CLAIM_TYPES = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")


@dataclass(frozen=True)
class AccessPolicy:
    """What the deployment accepts; built by the settings object from the environment."""

    mode: AccessMode = AccessMode.KEYS
    keys: Mapping[Access, tuple[str, ...]] = field(default_factory=dict)  # a kind with none is closed
    platform_authentication: bool = False  # App Service Authentication is on (WEBSITE_AUTH_ENABLED)

    @classmethod
    def parse(cls, mode: str, keys: Mapping[Access, str], platform_authentication: bool) -> AccessPolicy:
        try:
            chosen = AccessMode((mode or AccessMode.KEYS.value).strip().lower())
        except ValueError:
            raise ConfigError(f"ACCESS_MODE must be 'keys' or 'entra', got {mode!r}") from None
        parsed = {}
        for access, text in keys.items():
            values = tuple(key.strip() for key in (text or "").split(",") if key.strip())
            short = [key for key in values if len(key) < MIN_KEY_LENGTH]
            if short:
                raise ConfigError(
                    f"ACCESS_{access.name}_KEYS holds a key of {len(short[0])} characters: "
                    f"keys must be at least {MIN_KEY_LENGTH} (generate one: python -c "
                    '"import secrets; print(secrets.token_urlsafe(32))")'
                )
            if any(len(key) > MAX_KEY_LENGTH for key in values):
                raise ConfigError(f"ACCESS_{access.name}_KEYS holds a key longer than {MAX_KEY_LENGTH} characters")
            parsed[access] = values
        return cls(chosen, parsed, platform_authentication)

    def refusal(self, access: Access, headers: Mapping[str, str], query: Mapping[str, str]) -> Reply | None:
        """None when the caller has ``access``; otherwise the reply to send. Nothing else is read first."""
        headers = {name.lower(): value for name, value in headers.items()}
        if self.mode is AccessMode.ENTRA:
            return self._entra_refusal(access, headers)
        return self._key_refusal(access, headers, query)

    def _key_refusal(self, access: Access, headers: Mapping[str, str], query: Mapping[str, str]) -> Reply | None:
        in_header, in_query = headers.get(KEY_HEADER), query.get(KEY_QUERY)
        if in_header and in_query and not hmac.compare_digest(_digest(in_header), _digest(in_query)):
            return _unauthorized(
                f"The {KEY_HEADER} header and the ?{KEY_QUERY}= parameter name different keys; send one."
            )
        given = in_header or in_query
        if not given:
            return _unauthorized(f"This route needs a {access.value} key: send it as the {KEY_HEADER} header.")
        if len(given) > MAX_KEY_LENGTH:
            return _unauthorized(f"The key is longer than any key of this app ({MAX_KEY_LENGTH} characters).")
        accepted = self.keys.get(access, ())
        if not accepted:
            logger.warning(
                "a %s route was called but ACCESS_%s_KEYS is empty: the route is closed",
                access.value,
                access.name,
                extra={"access": access.value},
            )
        offered = _digest(given)
        # Every accepted key is compared (no early exit), each as a digest of equal length.
        matches = [hmac.compare_digest(offered, _digest(key)) for key in accepted]
        if not any(matches):
            return _unauthorized(f"The key is not a {access.value} key of this app.")
        return None

    def _entra_refusal(self, access: Access, headers: Mapping[str, str]) -> Reply | None:
        if not self.platform_authentication:
            logger.error(
                "ACCESS_MODE is entra but App Service Authentication is off (WEBSITE_AUTH_ENABLED): "
                "refusing every request, since any caller could forge the principal header"
            )
            return error(
                503,
                "AuthenticationNotConfigured",
                "This app expects Microsoft Entra ID sign-in, but App Service Authentication is off; "
                "an administrator must turn it on (see the README's access section).",
            )
        encoded = headers.get(PRINCIPAL_HEADER)
        if not encoded:
            return _sign_in("Sign in with Microsoft Entra ID: this route needs a bearer token for the app.")
        try:
            roles = principal_roles(encoded)
        except ValueError as failure:
            return _sign_in(f"The client principal could not be read: {failure}")
        role = APP_ROLES[access]
        if role not in roles:
            return error(
                403, "InsufficientPermissions", f"The signed-in identity lacks the app role {role!r} this route needs."
            )
        return None


def principal_roles(encoded: str) -> frozenset[str]:
    """The app roles in an ``X-MS-CLIENT-PRINCIPAL`` header (base64 JSON of the token's claims)."""
    if len(encoded) > MAX_PRINCIPAL_BYTES:
        raise ValueError("the header is too large")
    try:
        principal = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        raise ValueError("it is not base64-encoded JSON") from None
    if not isinstance(principal, dict) or not isinstance(principal.get("claims"), list):
        raise ValueError("it has no list of claims")
    role_types = {principal.get("role_typ"), *ROLE_CLAIM_TYPES}
    return frozenset(
        claim["val"]
        for claim in principal["claims"]
        if isinstance(claim, dict) and claim.get("typ") in role_types and isinstance(claim.get("val"), str)
    )


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _unauthorized(message: str) -> Reply:
    return error(401, "AuthenticationFailed", message)


def _sign_in(message: str) -> Reply:
    # Where App Service Authentication is on it answers unauthenticated callers itself; this reply is
    # for a caller that reached the app without a principal anyway (and for the local host).
    return error(401, "SignInRequired", message, headers={"WWW-Authenticate": "Bearer"})
