"""shared.access's rules on their own: settings refused with a reason, keys compared whole, roles read
from the principal header whatever claim type carries them."""

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.access import APP_ROLES, Access, AccessMode, AccessPolicy, principal_roles
from shared.config import Settings
from shared.errors import ConfigError
from tools.funchost import Keys

KEYS = {
    Access.READ: "read-key-0123456789,read-key-rotated-0001",
    Access.INGEST: "ingest-key-0123456789",
    Access.OPERATE: "",
}


@pytest.mark.parametrize(
    "env,message",
    [
        ({"ACCESS_MODE": "certificates"}, "ACCESS_MODE must be 'keys' or 'entra'"),
        ({"ACCESS_READ_KEYS": "short"}, "at least 16"),
        ({"ACCESS_INGEST_KEYS": "k" * 300}, "longer than 256"),
    ],
)
def test_settings_refuse_an_access_they_cannot_enforce(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true", **env})


def test_keys_mode_is_the_default_and_every_kind_starts_closed():
    access = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}).access
    assert access.mode is AccessMode.KEYS
    assert all(access.refusal(kind, {"x-functions-key": "any-key-0123456789"}, {}).status == 401 for kind in Access)


def test_every_key_of_a_rotation_is_accepted_and_only_for_its_kind():
    policy = AccessPolicy.parse("keys", KEYS, platform_authentication=False)
    for key in ("read-key-0123456789", "read-key-rotated-0001"):
        assert policy.refusal(Access.READ, {"X-Functions-Key": key}, {}) is None  # header names in any case
        assert policy.refusal(Access.INGEST, {"x-functions-key": key}, {}).status == 401
    assert policy.refusal(Access.OPERATE, {"x-functions-key": "read-key-0123456789"}, {}).status == 401


@given(st.text(min_size=1, max_size=300))
def test_nothing_but_an_accepted_key_opens_a_route(given_key):
    policy = AccessPolicy.parse("keys", KEYS, platform_authentication=False)
    accepted = {"read-key-0123456789", "read-key-rotated-0001"}
    refusal = policy.refusal(Access.READ, {"x-functions-key": given_key}, {})
    assert (refusal is None) == (given_key in accepted)
    # a prefix or an extension of a key is another key
    assert policy.refusal(Access.READ, {}, {"code": "read-key-0123456789" + given_key}).status == 401


def encoded(document) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def test_roles_are_read_under_the_principals_role_type_or_the_tokens_roles_claim():
    document = {
        "auth_typ": "aad",
        "role_typ": "urn:custom-role",
        "claims": [
            {"typ": "urn:custom-role", "val": "TaskCounts.Read"},
            {"typ": "roles", "val": "TaskCounts.Operate"},
            {"typ": "name", "val": "TaskCounts.Admin"},
            {"typ": "roles"},
            "not a claim",
        ],
    }
    assert principal_roles(encoded(document)) == {"TaskCounts.Read", "TaskCounts.Operate"}
    for bad in ("%%%", encoded([1]), encoded({"claims": "x"}), "A" * 70_000):
        with pytest.raises(ValueError):
            principal_roles(bad)


def test_each_kind_of_access_has_its_own_app_role():
    assert len(set(APP_ROLES.values())) == len(Access)
    assert APP_ROLES[Access.INGEST] == "AzureEventGridSecureWebhookSubscriber"  # what Event Grid's delivery needs


def test_local_settings_name_keys_per_function_as_azure_keeps_them():
    keys = Keys.from_settings(
        {"master": "m", "host": {"admin": "h"}, "functions": {"F": {"mine": "f"}}, "default": "legacy-host-key"}
    )
    assert keys.allows("function", "F", "f") and not keys.allows("function", "G", "f")
    assert keys.allows("function", "G", "h") and keys.allows("function", "G", "legacy-host-key")
    assert keys.allows("admin", None, "m") and not keys.allows("admin", None, "h")
    assert keys.allows("anonymous", "G", None) and not keys.allows("function", "F", None)
