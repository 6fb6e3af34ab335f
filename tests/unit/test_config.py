"""The one settings object: what it accepts and what it refuses, each refusal naming the setting."""

import json

import pytest

from shared.config import APP_SETTINGS, Settings
from shared.errors import ConfigError

BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}


def test_plain_values_are_read():
    settings = Settings.from_env(
        {
            **BASE,
            "BATCH_ACCOUNT_NAME": "contoso",
            "BATCH_ACCOUNT_KEY": "a2V5",
            "BATCH_ACCOUNT_URL": "https://contoso.westeurope.batch.azure.com/",
            "JOB_PARTITIONS": "8",
        }
    )
    account = settings.accounts.default
    assert (account.key, account.url, account.name, settings.job_partitions) == (
        "a2V5",
        "https://contoso.westeurope.batch.azure.com",
        "contoso",
        8,
    )


@pytest.mark.parametrize("name", ["BATCH_ACCOUNT_KEY", "BATCH_ACCOUNT_URL", "AzureWebJobsStorage", "JOB_PARTITIONS"])
@pytest.mark.parametrize(
    "reference",
    [
        "@Microsoft.KeyVault(SecretUri=https://contoso.vault.azure.net/secrets/batch-key/)",
        "@Microsoft.KeyVault(VaultName=contoso;SecretName=batch-key)",
        "  @microsoft.keyvault(SecretUri=https://contoso.vault.azure.net/secrets/batch-key)",
    ],
)
def test_an_unresolved_key_vault_reference_is_refused_with_the_setting_named(name, reference):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({**BASE, "BATCH_ACCOUNT_NAME": "contoso", name: reference})
    message = str(refused.value)
    assert message.startswith(f"{name} is an unresolved Key Vault reference")
    assert "Key Vault Secrets User" in message


def test_every_app_setting_is_checked_for_references():
    for name in APP_SETTINGS:
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({**BASE, name: "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/s)"})


def test_a_value_that_merely_mentions_key_vault_is_a_value():
    settings = Settings.from_env({**BASE, "COUNTS_TABLE_PREFIX": "keyvault"})
    assert settings.table_prefix == "keyvault"


@pytest.mark.parametrize(
    "environment,named",
    [
        ({}, "AzureWebJobsStorage"),
        ({**BASE, "COUNTS_TABLE_PREFIX": "1abc"}, "COUNTS_TABLE_PREFIX"),
        ({**BASE, "JOB_PARTITIONS": "many"}, "JOB_PARTITIONS"),
        ({**BASE, "JOB_PARTITIONS": "0"}, "JOB_PARTITIONS"),
        ({**BASE, "BATCH_ACCOUNT_KEY": "a2V5"}, "BATCH_ACCOUNT_NAME"),
    ],
)
def test_bad_settings_are_refused_with_the_setting_named(environment, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(environment)


@pytest.mark.parametrize(
    "environment, trusted",
    [
        ({}, False),
        ({"HTTPS_PROXY": ""}, False),
        ({"HTTPS_PROXY": "http://proxy:3128"}, True),
        ({"http_proxy": "http://proxy:3128"}, True),
        ({"ALL_PROXY": "socks5://proxy:1080"}, True),
    ],
)
def test_the_clients_read_the_environment_per_request_only_when_a_proxy_is_set(environment, trusted):
    settings = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true", **environment})
    assert settings.proxy_from_environment is trusted


def test_extra_accounts_are_counted_after_the_default_one_each_with_its_own_endpoint_and_key():
    extra = [
        {"name": "TeamB", "url": "https://teamb.eastus.batch.azure.com/", "keySetting": "TEAMB_KEY"},
        {
            "name": "teamc",
            "url": "https://teamc.westus.batch.azure.com",
            "resourceId": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Batch/batchAccounts/teamc",
        },
    ]
    settings = Settings.from_env(
        {
            **BASE,
            "BATCH_ACCOUNT_URL": "https://contoso.westeurope.batch.azure.com",
            "BATCH_EXTRA_ACCOUNTS": json.dumps(extra),
            "TEAMB_KEY": "a2V5",
        }
    )
    names = [(a.name, a.url, a.key, a.resource_id is not None) for a in settings.accounts.accounts]
    assert names == [
        ("contoso", "https://contoso.westeurope.batch.azure.com", None, False),
        ("teamb", "https://teamb.eastus.batch.azure.com", "a2V5", False),
        ("teamc", "https://teamc.westus.batch.azure.com", None, True),
    ]


@pytest.mark.parametrize(
    "extra,named",
    [
        ("not json", "JSON list"),
        ('{"name": "teamb"}', "JSON list"),
        ('[{"name": "t", "url": "https://t.x.batch.azure.com"}]', "name"),
        ('[{"name": "teamb"}]', "url"),
        ('[{"name": "teamb", "url": "https://teamb.x.batch.azure.com", "keySetting": "UNSET"}]', "UNSET"),
        ('[{"name": "teamb", "url": "https://teamb.x.batch.azure.com", "key": "a2V5"}]', "key"),
        (
            '[{"name": "teamb", "url": "https://teamb.x.batch.azure.com", "keySetting": "VAULTED"}]',
            "unresolved Key Vault reference",
        ),
        ('[{"name": "contoso", "url": "https://contoso.eastus.batch.azure.com"}]', "share a name"),
        (
            '[{"name": "teamb", "url": "https://teamb.x.batch.azure.com", "resourceId": "/subscriptions/s/'
            'resourceGroups/g/providers/Microsoft.Batch/batchAccounts/teamc"}]',
            "differs",
        ),
    ],
)
def test_a_malformed_extra_account_is_refused_naming_what_is_wrong(extra, named):
    env = {
        **BASE,
        "BATCH_ACCOUNT_URL": "https://contoso.westeurope.batch.azure.com",
        "BATCH_EXTRA_ACCOUNTS": extra,
        "VAULTED": "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/k/)",
    }
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_extra_accounts_need_the_default_account():
    extra = '[{"name": "teamb", "url": "https://teamb.eastus.batch.azure.com"}]'
    with pytest.raises(ConfigError, match="default account"):
        Settings.from_env({**BASE, "BATCH_EXTRA_ACCOUNTS": extra})
