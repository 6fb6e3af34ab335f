"""azd's flow as a team runs it: azure.yaml's hooks, what they check and run, and what azd restores.

The hooks run here under `sh` for real. The Azure CLI cannot sign in to Azure from these machines,
so where a hook calls `az`, a stand-in `az` on PATH answers as the CLI would and records its calls."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from pycep import BicepParser

REPO = Path(__file__).resolve().parent.parent.parent
HOOKS = REPO / "infra" / "hooks"
SYSTEM_PATH = "/usr/bin:/bin"  # sh, sed, sleep; no az
READY = {
    "AZURE_LOCATION": "westeurope",
    "AZURE_BATCH_ACCOUNT_NAME": "contosobatch",
    "AZURE_BATCH_RESOURCE_GROUP": "rg-batch",
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
    "AZURE_TENANT_ID": "00000000-0000-0000-0000-0000000000aa",
    "TASKCOUNTS_READ_KEY": "r" * 43,
    "TASKCOUNTS_INGEST_KEY": "i" * 43,
    "TASKCOUNTS_OPERATE_KEY": "o" * 43,
}
DEPLOYED = {
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
    "AZURE_RESOURCE_GROUP": "rg-tc",
    "AZURE_FUNCTION_APP_NAME": "func-taskcounts-abc",
    "EVENT_GRID_TOPIC_NAME": "evgt-taskcounts-abc",
    "STORAGE_ACCOUNT_NAME": "sttcabc",
    "EVENT_GRID_SCHEMA": "CloudEventSchemaV1_0",
    "EVENT_GRID_MAX_EVENTS_PER_BATCH": "500",
    "EVENT_GRID_PREFERRED_BATCH_KB": "64",
    "EVENT_GRID_DEAD_LETTER_CONTAINER": "taskevents-deadletter",
    "ACCESS_MODE": "keys",
    "ENTRA_TENANT_ID": "00000000-0000-0000-0000-0000000000aa",
}
KEY_NAMES = ("TASKCOUNTS_READ_KEY", "TASKCOUNTS_INGEST_KEY", "TASKCOUNTS_OPERATE_KEY")
FAKE_AZD = r"""#!/bin/sh
# Records each call of the stand-in azd, one per line (azd env set NAME VALUE).
printf '%s\n' "$*" >> "$FAKE_AZ_LOG.azd"
"""

FAKE_AZ = r"""#!/bin/sh
# Answers as the Azure CLI would for the calls the hooks make; records each call, one per line.
printf '%s\n' "$*" >> "$FAKE_AZ_LOG"
query=""
url=""
previous=""
for argument in "$@"; do
  [ "$previous" = "--query" ] && query=$argument
  [ "$previous" = "--url" ] && url=$argument
  previous=$argument
done
case "$1 $2" in
  "version "*) echo "${FAKE_AZ_VERSION:-2.67.0}" ;;
  "account show")
    [ "${FAKE_AZ_SIGNED_IN:-1}" = 1 ] || { echo "Please run 'az login'" >&2; exit 1; }
    if [ -n "$query" ]; then
      printf '%s\n%s\n' "${FAKE_AZ_SUBSCRIPTION:-00000000-0000-0000-0000-000000000001}" \
        "${FAKE_AZ_TENANT:-00000000-0000-0000-0000-0000000000aa}"
    fi ;;
  "functionapp list-flexconsumption-locations") printf '%s\n' ${FAKE_FLEX_LOCATIONS:-westeurope eastus} ;;
  "functionapp list-flexconsumption-runtimes") printf '%s\n' ${FAKE_FLEX_PYTHON:-3.11 3.12} ;;
  "rest --method")
    case "$url" in
      */resourceGroups/*) printf '%b\n' "${FAKE_RIGHTS_BATCH_GROUP:-*\t}" ;;
      *) printf '%b\n' "${FAKE_RIGHTS_SUBSCRIPTION:-*\t}" ;;
    esac ;;
  "batch account")
    [ "${FAKE_BATCH_EXISTS:-1}" = 1 ] || { echo "(ResourceNotFound)" >&2; exit 3; }
    case "$query" in
      location) echo "${FAKE_BATCH_LOCATION:-westeurope}" ;;
      allowedAuthenticationModes) printf '%s\n' ${FAKE_BATCH_MODES:-SharedKey AAD TaskAuthenticationToken} ;;
      publicNetworkAccess) echo "${FAKE_BATCH_NETWORK:-Enabled}" ;;
    esac ;;
  "monitor diagnostic-settings")
    case "$3" in
      show) [ "${FAKE_SETTING_EXISTS:-1}" = 1 ] || { echo "(ResourceNotFound)" >&2; exit 3; } ;;
      delete) [ "${FAKE_DELETE_FAILS:-0}" = 0 ] || { echo "(AuthorizationFailed)" >&2; exit 1; } ;;
    esac ;;
  "role assignment")
    case "$3" in
      list) if [ "${FAKE_ROLE_EXISTS:-1}" = 1 ]; then echo "/subscriptions/s/roleAssignments/r"; fi ;;
    esac ;;
  "deployment group")
    count=$(cat "$FAKE_AZ_LOG.failures" 2>/dev/null || echo 0)
    if [ "$count" -lt "${FAKE_DEPLOY_FAILURES:-0}" ]; then
      echo $((count + 1)) > "$FAKE_AZ_LOG.failures"
      echo "(Url validation) Webhook validation handshake failed" >&2
      exit 1
    fi ;;
esac
"""


@pytest.fixture
def fake_az(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "az").write_text(FAKE_AZ)
    (folder / "az").chmod(0o755)
    (folder / "azd").write_text(FAKE_AZD)
    (folder / "azd").chmod(0o755)
    return folder, tmp_path / "az.log"


def run_hook(name: str, env: dict, fake_az=None) -> subprocess.CompletedProcess:
    path = SYSTEM_PATH if fake_az is None else f"{fake_az[0]}:{SYSTEM_PATH}"
    extra = {} if fake_az is None else {"FAKE_AZ_LOG": str(fake_az[1])}
    return subprocess.run(
        ["sh", str(HOOKS / name)], env={"PATH": path, **extra, **env}, capture_output=True, text=True, timeout=60
    )


def azd_calls(fake_az) -> list[str]:
    log = Path(f"{fake_az[1]}.azd")
    return log.read_text().splitlines() if log.exists() else []


def az_calls(fake_az) -> list[str]:
    log = fake_az[1]
    return log.read_text().splitlines() if log.exists() else []


def test_azd_older_than_the_down_fix_is_refused():
    """azd < 1.24.1 removed every resource group a deployment touched on `azd down` (azure-dev
    "azd down removes resource groups not created by azd"): here, the Batch account's."""
    required = yaml.safe_load((REPO / "azure.yaml").read_text())["requiredVersions"]["azd"]
    assert re.fullmatch(r">=\s*1\.24\.1", required)


def test_azure_yaml_runs_both_hooks_in_both_shells():
    hooks = yaml.safe_load((REPO / "azure.yaml").read_text())["hooks"]
    assert set(hooks) == {"preprovision", "postdeploy", "predown"}
    for name, hook in hooks.items():
        assert hook["posix"]["shell"] == "sh" and hook["windows"]["shell"] == "pwsh"
        assert (REPO / hook["posix"]["run"]).resolve() == HOOKS / f"{name}.sh"
        assert (REPO / hook["windows"]["run"]).resolve() == HOOKS / f"{name}.ps1"
        assert hook["posix"]["continueOnError"] is False and hook["windows"]["continueOnError"] is False


@pytest.mark.parametrize("name", ["preprovision", "postdeploy"])
def test_the_powershell_hook_reads_the_same_values_as_the_shell_hook(name):
    """No PowerShell here to run the .ps1: at least it must name the same settings and say the same things."""

    def names(text):
        return set(re.findall(r"\b(?:AZURE|EVENT_GRID|STORAGE|POSTDEPLOY)_[A-Z_]+\b", text))

    shell, powershell = (HOOKS / f"{name}.sh").read_text(), (HOOKS / f"{name}.ps1").read_text()
    assert names(powershell) == names(shell)
    for phrase in re.findall(r"azd (?:env set|hooks run) [A-Za-z_$]+", shell):
        assert phrase.split("$")[0] in powershell


@pytest.mark.parametrize("missing", ["AZURE_LOCATION", "AZURE_BATCH_ACCOUNT_NAME", "AZURE_BATCH_RESOURCE_GROUP"])
def test_preprovision_names_the_azd_env_set_that_is_missing(missing):
    result = run_hook("preprovision.sh", {k: v for k, v in READY.items() if k != missing})
    assert result.returncode == 1
    assert f"azd env set {missing} " in result.stderr
    assert result.stderr.count("azd env set") == 1, result.stderr


def test_preprovision_names_every_missing_value_at_once():
    result = run_hook("preprovision.sh", {})
    assert result.returncode == 1
    assert all(
        f"azd env set {name} " in result.stderr
        for name in ("AZURE_LOCATION", "AZURE_BATCH_ACCOUNT_NAME", "AZURE_BATCH_RESOURCE_GROUP")
    )


def test_preprovision_requires_exactly_what_main_parameters_json_cannot_default():
    text = (REPO / "infra" / "main.parameters.json").read_text()
    required = set(re.findall(r"\$\{([A-Z_]+)\}", text)) - {"AZURE_ENV_NAME"}  # azd sets the environment's name
    assert required == set(re.findall(r"^require ([A-Z_]+)", (HOOKS / "preprovision.sh").read_text(), re.M))


def test_preprovision_without_the_azure_cli_stops_before_anything_is_created():
    result = run_hook("preprovision.sh", READY)  # no az on PATH
    assert result.returncode == 1
    assert (
        "https://aka.ms/installazurecli" in result.stderr
        and "az login --tenant " + READY["AZURE_TENANT_ID"] in result.stderr
    )


CONTRIBUTOR = (
    r"*\tMicrosoft.Authorization/*/Delete Microsoft.Authorization/*/Write Microsoft.Authorization/elevateAccess/Action"
)
READER = r"*/read\t"


@pytest.mark.parametrize(
    "answers,expected",
    [
        ({"FAKE_AZ_VERSION": "2.59.1"}, "needs 2.60.0 or later: az upgrade"),
        ({"FAKE_AZ_SIGNED_IN": "0"}, "az login --tenant 00000000-0000-0000-0000-0000000000aa"),
        (
            {"FAKE_AZ_TENANT": "tenant-b"},
            "signed in to tenant tenant-b but azd deploys to 00000000-0000-0000-0000-0000000000aa",
        ),
        ({"FAKE_AZ_SUBSCRIPTION": "sub-b"}, "az account set --subscription 00000000-0000-0000-0000-000000000001"),
        ({"FAKE_FLEX_LOCATIONS": "eastus northeurope"}, "offers no Flex Consumption plan"),
        ({"FAKE_FLEX_PYTHON": "3.12 3.13"}, "does not offer Python 3.11"),
        (
            {"FAKE_RIGHTS_SUBSCRIPTION": CONTRIBUTOR},
            "you lack Microsoft.Authorization/roleAssignments/write on the subscription",
        ),
        (
            {"FAKE_RIGHTS_BATCH_GROUP": READER},
            "you lack Microsoft.Insights/diagnosticSettings/write on resource group rg-batch",
        ),
    ],
)
def test_preprovision_stops_with_the_command_to_run_when_the_deployment_would_fail(fake_az, answers, expected):
    result = run_hook("preprovision.sh", {**READY, **answers}, fake_az)
    assert result.returncode == 1 and expected in result.stderr, result.stderr
    assert not any(call.startswith(("deployment", "group create")) for call in az_calls(fake_az))


def test_preprovision_weighs_each_role_apart_and_lets_the_batch_owner_do_their_part(fake_az):
    both = CONTRIBUTOR + r"\n*\t"  # Contributor's notActions do not take away what Owner grants
    assert run_hook("preprovision.sh", {**READY, "FAKE_RIGHTS_SUBSCRIPTION": both}, fake_az).returncode == 0
    readers_rights = run_hook("preprovision.sh", {**READY, "FAKE_RIGHTS_BATCH_GROUP": READER}, fake_az)
    assert "azd env set MANAGE_BATCH_ACCOUNT false" in readers_rights.stderr
    handed_over = {**READY, "FAKE_RIGHTS_BATCH_GROUP": READER, "MANAGE_BATCH_ACCOUNT": "false"}
    assert run_hook("preprovision.sh", handed_over, fake_az).returncode == 0


def test_preprovision_passes_a_batch_account_the_deployment_can_use(fake_az):
    result = run_hook("preprovision.sh", READY, fake_az)
    assert result.returncode == 0, result.stderr
    assert any("batch account show --name contosobatch --resource-group rg-batch" in call for call in az_calls(fake_az))


@pytest.mark.parametrize(
    "answers,extra,expected",
    [
        ({"FAKE_BATCH_EXISTS": "0"}, {}, "no Batch account contosobatch in resource group rg-batch"),
        ({"FAKE_BATCH_LOCATION": "eastus"}, {}, "azd env set AZURE_BATCH_LOCATION eastus"),
        ({"FAKE_BATCH_MODES": "SharedKey"}, {}, "does not allow Microsoft Entra ID"),
        ({"FAKE_BATCH_NETWORK": "Disabled"}, {}, "public network access is Disabled"),
        ({"FAKE_BATCH_LOCATION": "eastus"}, {"AZURE_BATCH_LOCATION": "eastus"}, None),
    ],
)
def test_preprovision_stops_on_a_batch_account_the_deployment_would_fail_on(fake_az, answers, extra, expected):
    result = run_hook("preprovision.sh", {**READY, **extra, **answers}, fake_az)
    if expected is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 1 and expected in result.stderr, result.stderr


def test_postdeploy_deploys_the_subscription_template_with_the_provisioned_values(fake_az):
    result = run_hook("postdeploy.sh", DEPLOYED, fake_az)
    assert result.returncode == 0, result.stderr
    [call] = [call for call in az_calls(fake_az) if call.startswith("deployment group create")]
    arguments = call.split()
    assert (
        Path(arguments[arguments.index("--template-file") + 1]).resolve() == REPO / "infra" / "event-subscription.bicep"
    )
    assert arguments[arguments.index("--resource-group") + 1] == "rg-tc"
    assert arguments[arguments.index("--subscription") + 1] == DEPLOYED["AZURE_SUBSCRIPTION_ID"]
    passed = dict(item.split("=", 1) for item in arguments[arguments.index("--parameters") + 1 :])
    template = BicepParser().parse(file_path=REPO / "infra" / "event-subscription.bicep")["parameters"]
    assert set(passed) == set(template)
    assert passed == {
        "topicName": "evgt-taskcounts-abc",
        "functionAppName": "func-taskcounts-abc",
        "eventSchema": "CloudEventSchemaV1_0",
        "maxEventsPerBatch": "500",
        "preferredBatchSizeInKilobytes": "64",
        "storageAccountName": "sttcabc",
        "deadLetterContainerName": "taskevents-deadletter",
        "accessMode": "keys",
        "entraClientId": "",
        "entraTenantId": DEPLOYED["ENTRA_TENANT_ID"],
    }


def test_preprovision_makes_each_missing_key_once_and_keeps_it_in_the_azd_environment(fake_az):
    without_keys = {name: value for name, value in READY.items() if name not in KEY_NAMES}
    result = run_hook("preprovision.sh", without_keys, fake_az)
    assert result.returncode == 0, result.stderr
    made = dict(call.split()[2:4] for call in azd_calls(fake_az))
    assert set(made) == set(KEY_NAMES) and len(set(made.values())) == 3
    assert all(len(key) >= 40 and re.fullmatch(r"[A-Za-z0-9_-]+", key) for key in made.values())
    assert not any(key in result.stdout + result.stderr for key in made.values())  # said where, not what
    Path(f"{fake_az[1]}.azd").unlink()
    assert run_hook("preprovision.sh", READY, fake_az).returncode == 0
    assert azd_calls(fake_az) == []  # present keys are kept


@pytest.mark.parametrize(
    "env,expected",
    [
        ({"ACCESS_MODE": "entra"}, "azd env set ENTRA_CLIENT_ID"),
        ({"ACCESS_MODE": "certificates"}, "azd env set ACCESS_MODE keys"),
    ],
)
def test_preprovision_stops_on_an_access_mode_it_cannot_deploy(fake_az, env, expected):
    result = run_hook("preprovision.sh", {**READY, **env}, fake_az)
    assert result.returncode == 1 and expected in result.stderr, result.stderr
    entra = run_hook("preprovision.sh", {**READY, "ACCESS_MODE": "entra", "ENTRA_CLIENT_ID": "app-id"}, fake_az)
    assert entra.returncode == 0, entra.stderr


def test_postdeploy_reads_only_what_provisioning_leaves_in_the_environment():
    outputs = set(BicepParser().parse(file_path=REPO / "infra" / "main.bicep")["outputs"])
    read = set(re.findall(r"\$\{?([A-Z][A-Z_]+)", (HOOKS / "postdeploy.sh").read_text()))
    tunables = {"POSTDEPLOY_ATTEMPTS", "POSTDEPLOY_PAUSE_SECONDS"}
    assert read - tunables - outputs == {"AZURE_SUBSCRIPTION_ID"}  # azd's own


@pytest.mark.parametrize("failures,succeeds", [(2, True), (3, False)])
def test_postdeploy_tries_again_when_the_fresh_app_misses_the_handshake(fake_az, failures, succeeds):
    env = {**DEPLOYED, "FAKE_DEPLOY_FAILURES": str(failures), "POSTDEPLOY_PAUSE_SECONDS": "0"}
    result = run_hook("postdeploy.sh", env, fake_az)
    deployments = [call for call in az_calls(fake_az) if call.startswith("deployment group create")]
    assert len(deployments) == min(failures + 1, 3)
    assert (result.returncode == 0) is succeeds
    if not succeeds:
        assert "azd hooks run postdeploy" in result.stderr


PROVISIONED_BATCH_SIDE = {
    "BATCH_ACCOUNT_ID": "/subscriptions/s/resourceGroups/rg-batch/providers/Microsoft.Batch/batchAccounts/contosobatch",
    "BATCH_DIAGNOSTIC_SETTING_NAME": "taskcounts-servicelog-abc",
    "MANAGED_IDENTITY_PRINCIPAL_ID": "pid-1",
    "SERVICE_LOG_HUB_NAME": "batch-service-log",
    "SERVICE_LOG_RULE_ID": "/subscriptions/s/rule",
}


def test_postdeploy_prints_the_batch_owners_commands_when_the_account_is_someone_elses(fake_az):
    result = run_hook("postdeploy.sh", {**DEPLOYED, **PROVISIONED_BATCH_SIDE, "MANAGE_BATCH_ACCOUNT": "false"}, fake_az)
    assert result.returncode == 0, result.stderr
    assert (
        "az role assignment create --assignee-object-id pid-1 --assignee-principal-type ServicePrincipal "
        "--role 11076f67-66f6-4be0-8f6b-f0609fd05cc9 --scope " + PROVISIONED_BATCH_SIDE["BATCH_ACCOUNT_ID"]
    ) in result.stdout
    assert "az monitor diagnostic-settings create --name taskcounts-servicelog-abc" in result.stdout
    assert "--event-hub-rule /subscriptions/s/rule" in result.stdout
    managed = run_hook("postdeploy.sh", {**DEPLOYED, **PROVISIONED_BATCH_SIDE}, fake_az)
    assert "owner runs" not in managed.stdout


@pytest.mark.parametrize("setting,role", [(1, 1), (0, 1), (1, 0), (0, 0)])
def test_predown_removes_what_the_environment_put_on_the_batch_account_and_nothing_twice(fake_az, setting, role):
    env = {**PROVISIONED_BATCH_SIDE, "FAKE_SETTING_EXISTS": str(setting), "FAKE_ROLE_EXISTS": str(role)}
    result = run_hook("predown.sh", env, fake_az)
    assert result.returncode == 0, result.stderr
    calls = az_calls(fake_az)
    deleted_setting = [c for c in calls if c.startswith("monitor diagnostic-settings delete")]
    deleted_role = [c for c in calls if c.startswith("role assignment delete")]
    assert len(deleted_setting) == setting and len(deleted_role) == role
    if setting:
        assert (
            f"--name taskcounts-servicelog-abc --resource {PROVISIONED_BATCH_SIDE['BATCH_ACCOUNT_ID']}"
            in deleted_setting[0]
        )
    if role:
        assert "--assignee pid-1 --role 11076f67-66f6-4be0-8f6b-f0609fd05cc9" in deleted_role[0]


def test_predown_cleans_every_account_the_environment_counted(fake_az):
    extra = "/subscriptions/s/resourceGroups/rg-teamb/providers/Microsoft.Batch/batchAccounts/teamb"
    ids = f"{PROVISIONED_BATCH_SIDE['BATCH_ACCOUNT_ID']} {extra}"
    env = {**PROVISIONED_BATCH_SIDE, "BATCH_ACCOUNT_IDS": ids, "FAKE_SETTING_EXISTS": "1", "FAKE_ROLE_EXISTS": "1"}
    result = run_hook("predown.sh", env, fake_az)
    assert result.returncode == 0, result.stderr
    calls = az_calls(fake_az)
    for account_id in ids.split():
        assert any(c.startswith("monitor diagnostic-settings delete") and account_id in c for c in calls)
        assert any(c.startswith("role assignment delete") and account_id in c for c in calls)


def test_predown_stops_azd_down_when_it_cannot_clean_up_and_skips_an_account_it_does_not_run(fake_az):
    failing = run_hook("predown.sh", {**PROVISIONED_BATCH_SIDE, "FAKE_DELETE_FAILS": "1"}, fake_az)
    assert failing.returncode == 1 and "azd down again" in failing.stderr
    no_cli = run_hook("predown.sh", PROVISIONED_BATCH_SIDE)
    assert no_cli.returncode == 1 and "az login" in no_cli.stderr
    fake_az[1].unlink()
    not_ours = run_hook("predown.sh", {**PROVISIONED_BATCH_SIDE, "MANAGE_BATCH_ACCOUNT": "false"}, fake_az)
    assert not_ours.returncode == 0 and not any("delete" in call for call in az_calls(fake_az))


def test_postdeploy_says_what_it_needs():
    missing = run_hook("postdeploy.sh", {k: v for k, v in DEPLOYED.items() if k != "EVENT_GRID_TOPIC_NAME"})
    assert missing.returncode == 1 and "EVENT_GRID_TOPIC_NAME" in missing.stderr and "azd provision" in missing.stderr
    no_cli = run_hook("postdeploy.sh", DEPLOYED)
    assert no_cli.returncode == 1 and "Azure CLI" in no_cli.stderr and "azd hooks run postdeploy" in no_cli.stderr


def test_azd_restores_the_apps_requirements_not_a_pyproject():
    """azd restores a Python service from pyproject.toml when one exists, before requirements.txt."""
    assert not (REPO / "pyproject.toml").exists()
    assert "azure-functions" in (REPO / "requirements.txt").read_text()
    assert (REPO / "pytest.ini").exists()  # the test configuration that used to live in pyproject.toml


def test_hook_scripts_are_executable_and_parse():
    for script in HOOKS.glob("*.sh"):
        assert os.access(script, os.X_OK), script
        assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    assert {path.stem for path in HOOKS.glob("*.ps1")} == {path.stem for path in HOOKS.glob("*.sh")}
    json.loads((REPO / "infra" / "main.parameters.json").read_text())


EXTRA = '[{"name": "teamb", "resourceGroup": "rg-teamb", "location": "westeurope"}]'


def test_preprovision_checks_each_extra_batch_account_where_it_says_it_is(fake_az):
    passing = run_hook("preprovision.sh", {**READY, "AZURE_EXTRA_BATCH_ACCOUNTS": EXTRA}, fake_az)
    assert passing.returncode == 0, passing.stderr
    assert any("batch account show --name teamb --resource-group rg-teamb" in call for call in az_calls(fake_az))
    elsewhere = run_hook(
        "preprovision.sh", {**READY, "AZURE_EXTRA_BATCH_ACCOUNTS": EXTRA.replace("westeurope", "eastus")}, fake_az
    )
    assert elsewhere.returncode == 1 and "teamb is in westeurope, not eastus" in elsewhere.stderr
    for malformed in ("teamb", '[{"name": "teamb"}]', '{"name": "teamb"}'):
        refused = run_hook("preprovision.sh", {**READY, "AZURE_EXTRA_BATCH_ACCOUNTS": malformed}, fake_az)
        assert refused.returncode == 1 and "azd env set AZURE_EXTRA_BATCH_ACCOUNTS" in refused.stderr, malformed
