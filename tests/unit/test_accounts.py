"""Which Batch account a record came from, and the account the settings configure (shared.accounts)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.accounts import (
    AccountId,
    Accounts,
    BatchAccount,
    MalformedResourceIdError,
    UnknownAccountError,
    account_of,
    account_of_job_key,
    job_key_of,
)
from shared.errors import ConfigError

names = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=3, max_size=24)
segments = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.()", min_size=1, max_size=40)


@given(segments, segments, names, st.booleans())
def test_an_arm_id_reads_back_whatever_its_case(subscription, group, name, upper):
    text = str(AccountId(subscription, group, name))
    parsed = AccountId.parse(text.upper() if upper else text)
    assert parsed == AccountId(subscription.lower(), group.lower(), name)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "contoso",
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/contoso",
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.Batch/batchAccounts/contoso/pools/p",
        "/subscriptions//resourceGroups/g/providers/Microsoft.Batch/batchAccounts/contoso",
        "x" * 5000,
    ],
)
def test_anything_but_a_batch_accounts_arm_id_is_malformed(text):
    with pytest.raises(MalformedResourceIdError):
        AccountId.parse(text)


def test_the_configured_account_is_named_by_its_setting_its_url_or_its_arm_id():
    arm = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Batch/batchAccounts/contoso"
    url = "https://contoso.westeurope.batch.azure.com"
    assert account_of(url + "/", None, None) == BatchAccount("contoso", url=url)
    simulator = account_of("http://127.0.0.1:8099", "SimAccount", None, "a2V5")
    assert simulator == BatchAccount("simaccount", url="http://127.0.0.1:8099", key="a2V5")
    assert account_of(None, None, arm) == BatchAccount("contoso", AccountId.parse(arm))
    assert account_of(None, None, None) is None
    with pytest.raises(ConfigError, match="BATCH_ACCOUNT_NAME"):
        account_of("http://127.0.0.1:8099", None, None)
    with pytest.raises(ConfigError, match="differs"):
        account_of(None, "fabrikam", arm)
    with pytest.raises(ConfigError, match="BATCH_ACCOUNT_RESOURCE_ID"):
        account_of(None, None, "/subscriptions/s/resourceGroups/g")


def test_a_record_is_routed_to_the_account_that_emitted_it_and_no_other():
    west = AccountId("s1", "g", "west")
    accounts = Accounts((BatchAccount("west", west), BatchAccount("east")))
    assert accounts.emitter(str(west).upper()) == accounts.accounts[0]
    assert accounts.emitter(str(AccountId("s2", "g", "west"))) is None  # same name, another subscription
    assert accounts.emitter(str(AccountId("s9", "any", "east"))) == accounts.accounts[1]  # by name alone
    assert accounts.emitter(str(AccountId("s1", "g", "north"))) is None


batch_ids = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1, max_size=64)


@given(st.none() | names, batch_ids)
def test_a_jobs_key_names_its_account_and_the_default_accounts_keys_are_the_ids_as_before(account, job_id):
    key = job_key_of(account, job_id)
    assert account_of_job_key(key) == account
    assert key.endswith(job_id.lower()) and (account is not None or key == job_id.lower())


def test_an_account_is_found_by_its_name_and_an_unknown_one_is_refused():
    accounts = Accounts((BatchAccount("west"), BatchAccount("east")))
    assert accounts.named("EAST") == accounts.accounts[1] and accounts.default == accounts.accounts[0]
    assert accounts.key_name(accounts.accounts[0]) is None and accounts.key_name(accounts.accounts[1]) == "east"
    with pytest.raises(UnknownAccountError):
        accounts.named("north")
