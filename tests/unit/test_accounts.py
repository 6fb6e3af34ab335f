"""Which Batch account a record came from, and the account the settings configure (shared.accounts)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.accounts import AccountId, Accounts, BatchAccount, MalformedResourceIdError, account_of
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
    assert account_of("https://contoso.westeurope.batch.azure.com", None, None) == BatchAccount("contoso")
    assert account_of("http://127.0.0.1:8099", "SimAccount", None) == BatchAccount("simaccount")
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
