"""infra/: every Bicep file parses (pycep-parser 0.7.1) and the structure is what deployment needs.

No Bicep compiler runs here, so these checks stand in for what `az bicep build` would catch and
assert what the design requires (identity-based storage, Flex Consumption, roles, Event Grid)."""

import json
import re
from pathlib import Path

import pytest
from pycep import BicepParser

from shared.config import APP_SETTINGS, BATCH_ACCOUNT_KEY, BATCH_LOG_CONNECTION, STORAGE_CONNECTION
from shared.monitoring import ALERT_PREFIX, OTHER_ACCOUNT, SERVICE_LOG_LAGGING
from shared.progress import ALERT_KINDS

REPO = Path(__file__).resolve().parent.parent.parent
INFRA = REPO / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
ALLOWED_TYPES = {
    "Microsoft.Resources/resourceGroups": "2024-03-01",
    "Microsoft.ManagedIdentity/userAssignedIdentities": "2023-01-31",
    "Microsoft.OperationalInsights/workspaces": "2023-09-01",
    "Microsoft.Insights/components": "2020-02-02",
    "Microsoft.Storage/storageAccounts": "2023-05-01",
    "Microsoft.Storage/storageAccounts/blobServices": "2023-05-01",
    "Microsoft.Storage/storageAccounts/blobServices/containers": "2023-05-01",
    "Microsoft.Web/serverfarms": "2024-04-01",
    "Microsoft.Web/sites": "2024-04-01",
    "Microsoft.Web/sites/config": "2024-04-01",
    "Microsoft.EventGrid/topics": "2022-06-15",
    "Microsoft.EventGrid/topics/eventSubscriptions": "2022-06-15",
    "Microsoft.Authorization/roleAssignments": "2022-04-01",
    "Microsoft.Batch/batchAccounts": "2024-07-01",
    "Microsoft.EventHub/namespaces": "2024-01-01",
    "Microsoft.EventHub/namespaces/eventhubs": "2024-01-01",
    "Microsoft.EventHub/namespaces/eventhubs/consumergroups": "2024-01-01",
    "Microsoft.EventHub/namespaces/authorizationRules": "2024-01-01",
    "Microsoft.Insights/diagnosticSettings": "2021-05-01-preview",
    "Microsoft.Insights/actionGroups": "2023-01-01",
    "Microsoft.Insights/scheduledQueryRules": "2023-03-15-preview",
}
ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor (Event Grid dead-lettering)",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "11076f67-66f6-4be0-8f6b-f0609fd05cc9": "Azure Batch Account Reader",
    "d5a91429-5739-47e2-a06b-3470a27159e7": "EventGrid Data Sender",
    "a638d3c7-ab3a-418d-83e6-5f17a39d4fde": "Azure Event Hubs Data Receiver",
}
# Microsoft's "Flex Consumption plan deprecations" table (App settings reference for Azure Functions,
# learn.microsoft.com, 2025-12-22): site properties and app settings a Flex site must not carry. Some
# are refused outright (ftpsState: BadRequest, ExtendedCode 51021) although the Bicep types accept them.
FLEX_DEPRECATED_PROPERTIES = {
    "alwaysOn",
    "containerSize",
    "dnsConfiguration",
    "ftpsState",
    "isReserved",
    "IsXenon",
    "javaVersion",
    "LinuxFxVersion",
    "netFrameworkVersion",
    "powerShellVersion",
    "functionAppScaleLimit",
    "preWarmedInstanceCount",
    "use32BitWorkerProcess",
    "vnetBackupRestoreEnabled",
    "vnetContentShareEnabled",
    "vnetImagePullEnabled",
    "vnetRouteAllEnabled",
    "windowsFxVersion",
}
FLEX_DEPRECATED_SETTINGS = {
    "ENABLE_ORYX_BUILD",
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "FUNCTIONS_WORKER_PROCESS_COUNT",
    "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTOVERVNET",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_DNS_SERVER",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "WEBSITE_NODE_DEFAULT_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
    "WEBSITE_VNET_ROUTE_ALL",
}
# Not in that table and not confirmed either way on Flex: left out rather than risk a refused deployment.
FLEX_UNCONFIRMED_PROPERTIES = {"http20Enabled"}
# Settings the Functions host and its extensions read (not shared/config.py).
HOST_SETTINGS = {
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}


def parse(path: Path) -> dict:
    return BicepParser(add_line_numbers=True).parse(file_path=path)


def body(resource: dict) -> dict:
    """A resource's own properties, through pycep's wrappers for conditions and loops."""
    config = resource["config"]
    while "config" in config and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return config


def resources(type_name: str) -> list[tuple[Path, str, dict]]:
    found = []
    for path in BICEP_FILES:
        for name, resource in parse(path).get("resources", {}).items():
            if resource["type"] == type_name and not resource["existing"]:
                found.append((path, name, resource))
    return found


def one(type_name: str) -> dict:
    return one_with_path(type_name)[2]


def one_with_path(type_name: str) -> tuple[Path, str, dict]:
    [found] = resources(type_name)
    return found


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path):
    try:
        parse(path)
    except Exception as error:  # pycep/lark errors carry line and column
        pytest.fail(f"{path.relative_to(REPO)}: {error}")


def test_resource_types_and_api_versions_come_from_the_allow_list():
    seen = set()
    for path in BICEP_FILES:
        for name, resource in parse(path).get("resources", {}).items():
            assert ALLOWED_TYPES.get(resource["type"]) == resource["api_version"], (
                f"{path.name}:{name} uses {resource['type']}@{resource['api_version']}"
            )
            seen.add(resource["type"])
    assert seen == set(ALLOWED_TYPES)


def test_flex_consumption_linux_python_311_with_a_user_assigned_identity():
    plan = body(one("Microsoft.Web/serverfarms"))
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"} and plan["properties"]["reserved"] is True
    site = body(one("Microsoft.Web/sites"))
    assert site["kind"] == "functionapp,linux" and site["identity"]["type"] == "UserAssigned"
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert site["properties"]["httpsOnly"] is True and site["properties"]["siteConfig"]["minTlsVersion"] == "1.2"


def test_storage_is_identity_only_https_tls12_and_private_to_anonymous_readers():
    storage = body(one("Microsoft.Storage/storageAccounts"))["properties"]
    assert storage["allowSharedKeyAccess"] is False and storage["allowBlobPublicAccess"] is False
    assert storage["minimumTlsVersion"] == "TLS1_2" and storage["supportsHttpsTrafficOnly"] is True
    settings = app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    text = "\n".join(path.read_text() for path in BICEP_FILES)
    assert "AccountKey=" not in text and "listKeys(storage" not in text  # no connection string, no key lookup
    assert STORAGE_CONNECTION not in settings  # a connection string would hold an account key


def test_roles_are_the_expected_built_in_roles_with_idempotent_names():
    role_ids = set()
    for path, name, resource in resources("Microsoft.Authorization/roleAssignments"):
        config = body(resource)
        assert config["name"]["function"]["type"] == "guid", f"{path.name}:{name} is not named with guid()"
        role_ids.update(re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", path.read_text()))
    assert role_ids == set(ROLES), {rid: ROLES.get(rid, "unexpected") for rid in role_ids ^ set(ROLES)}


def test_batch_reader_role_is_granted_in_the_batch_accounts_own_resource_group():
    modules = parse(INFRA / "main.bicep")["modules"]
    scope = body(modules["batchAccess"])["scope"]["function"]
    assert scope["type"] == "resource_group"
    assert scope["parameters"]["resource_group_name"] == "batchAccountResourceGroup"


def test_event_subscription_is_a_batched_webhook_with_retries_and_dead_lettering_deployed_after_the_code():
    path, _, subscription = one_with_path("Microsoft.EventGrid/topics/eventSubscriptions")
    assert path == INFRA / "event-subscription.bicep"  # its own deployment, run by the postdeploy hook
    assert "condition" not in subscription["config"]  # no flag decides whether it exists
    properties = body(subscription)["properties"]
    destination = properties["destination"]
    assert destination["endpointType"] == "WebHook"
    assert destination["properties"]["endpointUrl"].endswith("/api/taskevents")  # no ?code=: URLs are logged
    assert destination["properties"]["maxEventsPerBatch"] == "maxEventsPerBatch"
    assert destination["properties"]["preferredBatchSizeInKilobytes"] == "preferredBatchSizeInKilobytes"
    assert set(properties["filter"]["includedEventTypes"]) == {"Batch.TaskStateChanged", "Batch.TaskDeleted"}
    assert properties["retryPolicy"]["maxDeliveryAttempts"] >= 10
    dead_letter = properties["deadLetterWithResourceIdentity"]["deadLetterDestination"]
    assert dead_letter["endpointType"] == "StorageBlob"
    topic = body(one("Microsoft.EventGrid/topics"))
    assert topic["properties"]["disableLocalAuth"] is True
    main = parse(INFRA / "main.bicep")["parameters"]
    assert "deployEventSubscription" not in main
    assert main["maxEventsPerBatch"]["decorators"] and main["preferredBatchSizeInKilobytes"]["decorators"]
    assert "DEPLOY_EVENT_SUBSCRIPTION" not in (INFRA / "main.parameters.json").read_text()


def test_event_grid_sends_the_ingest_key_in_a_secret_header_or_an_entra_token_never_in_the_url():
    _, _, subscription = one_with_path("Microsoft.EventGrid/topics/eventSubscriptions")
    delivery = json.dumps(body(subscription)["properties"]["destination"]["properties"])
    assert '"name": "x-functions-key"' in delivery and '"isSecret": true' in delivery
    assert "ACCESS_INGEST_KEYS" in delivery and "listKeys" not in delivery  # the ingest key, not a host key
    assert "azureActiveDirectoryApplicationIdOrUri" in delivery and "api://${entraClientId}" in delivery
    assert "code=" not in (INFRA / "event-subscription.bicep").read_text()


def test_entra_mode_puts_app_service_authentication_in_front_of_every_route_but_the_dashboard_files():
    [(path, _, authentication)] = resources("Microsoft.Web/sites/config")
    assert path == INFRA / "app" / "function.bicep" and "condition" in authentication["config"]
    settings = body(authentication)["properties"]
    assert settings["globalValidation"]["requireAuthentication"] is True
    assert settings["globalValidation"]["unauthenticatedClientAction"] == "Return401"
    dashboard = {f"/api/dashboard/{file.name}" for file in (REPO / "web").iterdir()}
    assert set(settings["globalValidation"]["excludedPaths"]) == dashboard | {
        "/api/dashboard",
        "/api/dashboard/",
        "/api/openapi.json",
    }
    audiences = settings["identityProviders"]["azureActiveDirectory"]["validation"]["allowedAudiences"]
    assert "api://${entraClientId}" in audiences
    assert "roles" not in json.dumps(settings).lower()  # roles are the app's check (shared/access.py), not Easy Auth's


def test_the_flex_site_carries_nothing_flex_deprecates():
    site = body(one("Microsoft.Web/sites"))
    properties, site_config = site["properties"], site["properties"]["siteConfig"]
    present = {name.lower() for name in (*properties, *site_config)}
    refused = {name.lower() for name in FLEX_DEPRECATED_PROPERTIES | FLEX_UNCONFIRMED_PROPERTIES}
    assert not present & refused, f"Flex Consumption refuses {sorted(present & refused)}"
    settings = {name.upper() for name in app_settings()}
    assert not settings & FLEX_DEPRECATED_SETTINGS, f"deprecated on Flex: {sorted(settings & FLEX_DEPRECATED_SETTINGS)}"


def test_the_apps_roles_are_granted_before_the_app_is_created():
    modules = parse(INFRA / "main.bicep")["modules"]
    assert modules["app"]["config"]["dependsOn"] == ["roles"]
    roles = parse(INFRA / "app" / "roles.bicep")["resources"]
    assert {name for name in roles if not roles[name]["existing"]} == {"appStorageAccess", "appTelemetry"}
    assert set(modules["roles"]["config"]["params"]) == {
        "storageAccountName",
        "applicationInsightsName",
        "appPrincipalId",
    }  # waits for nothing created later


def test_batch_is_read_with_the_apps_identity_and_no_key_vault_reference_is_left_to_resolve():
    text = "\n".join(path.read_text() for path in BICEP_FILES).lower()
    assert "@microsoft.keyvault(" not in text and "keyvaultreferenceidentity" not in text
    assert BATCH_ACCOUNT_KEY not in app_settings()


def app_settings() -> dict:
    site = body(one("Microsoft.Web/sites"))
    return {item["name"]: item["value"] for item in site["properties"]["siteConfig"]["appSettings"]}


def test_the_app_settings_in_bicep_are_exactly_the_settings_the_app_reads():
    deployed = set(app_settings()) - HOST_SETTINGS
    # local only: deployments use identity-based settings (storage, the hub, Batch with Entra ID)
    expected = set(APP_SETTINGS) - {STORAGE_CONNECTION, BATCH_LOG_CONNECTION, BATCH_ACCOUNT_KEY}
    assert deployed == expected
    # the account whose service-log records are counted is named by its ARM id, not only its name
    assert app_settings()["BATCH_ACCOUNT_RESOURCE_ID"] == "batchAccountResourceId"
    assert "batchAccountResourceId: batchAccount.id" in (INFRA / "main.bicep").read_text()


def test_the_service_log_streams_to_a_hub_in_the_batch_region_read_with_the_apps_identity():
    modules = parse(INFRA / "main.bicep")["modules"]
    diagnostics_scope = body(modules["batchDiagnostics"])["scope"]["function"]
    assert diagnostics_scope["type"] == "resource_group"
    assert diagnostics_scope["parameters"]["resource_group_name"] == "batchAccountResourceGroup"
    main_text = (INFRA / "main.bicep").read_text()
    assert "var hubLocation = empty(batchAccountLocation) ? location : batchAccountLocation" in main_text
    assert "location: hubLocation" in main_text
    setting = body(one("Microsoft.Insights/diagnosticSettings"))["properties"]
    assert [log["category"] for log in setting["logs"]] == ["ServiceLog"]  # not allLogs: AuditLog is billed
    assert setting["eventHubName"] and setting["eventHubAuthorizationRuleId"]
    rule = body(one("Microsoft.EventHub/namespaces/authorizationRules"))["properties"]
    assert set(rule["rights"]) == {"Manage", "Send", "Listen"}
    namespace = body(one("Microsoft.EventHub/namespaces"))
    assert namespace["sku"]["name"] == "Standard"  # a consumer group of its own needs Standard
    assert one("Microsoft.EventHub/namespaces/eventhubs/consumergroups")
    settings = app_settings()
    assert settings["BATCH_LOG__credential"] == "managedidentity" and "BATCH_LOG" not in settings  # no key
    trigger = json.loads((REPO / "BatchServiceLogs" / "function.json").read_text())["bindings"][0]
    assert trigger["connection"] == "BATCH_LOG"
    assert trigger["eventHubName"] == "%BATCH_LOG_HUB%" and trigger["consumerGroup"] == "%BATCH_LOG_CONSUMER_GROUP%"


def test_local_settings_and_readme_name_the_same_settings():
    local = json.loads((REPO / "local.settings.example.json").read_text())["Values"]
    identity_only = {
        "AzureWebJobsStorage__tableServiceUri",
        "AzureWebJobsStorage__clientId",
        "BATCH_LOG__fullyQualifiedNamespace",
        "BATCH_LOG__credential",
        "BATCH_LOG__clientId",
    }
    assert set(local) - {"FUNCTIONS_WORKER_RUNTIME"} == set(APP_SETTINGS) - identity_only
    readme = (REPO / "README.md").read_text()
    for name in APP_SETTINGS:
        assert f"`{name}`" in readme, f"README's configuration table lacks {name}"


def test_azd_files_match_main_bicep():
    main = parse(INFRA / "main.bicep")["parameters"]
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(parameters) <= set(main)
    required = {name for name, param in main.items() if param.get("default") is None}
    assert required <= set(parameters)
    azure_yaml = (REPO / "azure.yaml").read_text()
    assert "host: function" in azure_yaml and "language: python" in azure_yaml


def test_stalled_and_failing_records_raise_log_alerts_that_mail_the_action_group():
    path, _, rules = one_with_path("Microsoft.Insights/scheduledQueryRules")
    text = path.read_text()
    rule = body(rules)
    assert rule["kind"] == "LogAlert"
    properties = rule["properties"]
    assert accessor("applicationInsights", "id") in json.dumps(properties["scopes"])
    assert accessor("actionGroup", "id") in json.dumps(properties["actions"])
    [criterion] = properties["criteria"]["allOf"]
    assert criterion["operator"] == "GreaterThan" and criterion["threshold"] == 0
    assert properties["skipQueryValidation"] is True  # a new Application Insights has no traces table yet
    assert "jobId" in json.dumps(criterion["dimensions"])  # one alert per job, not one per rule
    # The rules are one per kind the app raises, and search the exact prefix the app logs.
    kinds = re.findall(r"kind: '([A-Za-z]+)'\n\s+severity", text)
    assert sorted(kinds) == sorted((*ALERT_KINDS, SERVICE_LOG_LAGGING, OTHER_ACCOUNT))
    assert f"var alertPrefix = '{ALERT_PREFIX}'" in text
    query = alert_query(criterion["query"], "stalled")
    assert query.startswith(f'traces | where message startswith "{ALERT_PREFIX}"')
    assert f"substring(message, {len(ALERT_PREFIX)})" in query and 'tostring(record.alert) == "stalled"' in query
    _, _, group = one_with_path("Microsoft.Insights/actionGroups")
    receivers = body(group)["properties"]["emailReceivers"]
    assert receivers["loop_type"]["detail"]["array_name"] == "alertEmails"
    assert receivers["config"]["emailAddress"] == "address" and receivers["config"]["useCommonAlertSchema"] is True
    main = parse(INFRA / "main.bicep")
    assert "alertEmails" in main["parameters"]
    assert "alertEmails" in json.dumps(main["modules"]["alerts"])


def accessor(name: str, member: str) -> str:
    """How pycep renders ``name.member`` (JSON text)."""
    return json.dumps({"type": "property_accessor", "operands": {"operand_1": name, "operand_2": member}})


def alert_query(template: str, kind: str) -> str:
    """alerts.bicep's KQL with its interpolations done as Bicep would."""
    return (
        template.replace("${length(alertPrefix)}", str(len(ALERT_PREFIX)))
        .replace("${alertPrefix}", ALERT_PREFIX)
        .replace("${alert.kind}", kind)
    )


def test_settings_the_host_resolves_have_one_value_in_local_settings_bicep_and_readme():
    """%NAME% in a function.json has no default the code could give: Bicep, the local example and the
    README's table must agree on each value."""
    local = json.loads((REPO / "local.settings.example.json").read_text())["Values"]
    main_text = (INFRA / "main.bicep").read_text()
    function_text = (INFRA / "app" / "function.bicep").read_text()
    readme = (REPO / "README.md").read_text()
    resolved = {name for path in REPO.glob("*/function.json") for name in re.findall(r"%(\w+)%", path.read_text())}
    assert {"VALIDATION_SCHEDULE", "TASK_SYNC_SCHEDULE", "PROGRESS_SCHEDULE", "SUMMARY_SCHEDULE"} <= resolved
    for name in sorted(resolved):
        value = local[name]
        param = re.search(rf"name: '{name}'\s+value: (\w+)", function_text).group(1)
        default = re.search(rf"param {param} string = '([^']*)'", main_text)
        if default is not None:  # a parameter of its own (the hub names come from the hub's module)
            assert default.group(1) == value, name
        row = next(line for line in readme.splitlines() if line.startswith("|") and f"`{name}`" in line.split("|")[1])
        assert f"required: `{value}`" in row or f"`{value}`" in row.split("|")[2] and "required" in row, (name, row)


def test_alert_records_are_never_sampled_away():
    """The alert rules count TASKCOUNTS_ALERT traces: adaptive sampling must not drop a trace (nor a
    request or an exception, which say why one was raised)."""
    sampling = json.loads((REPO / "host.json").read_text())["logging"]["applicationInsights"]["samplingSettings"]
    excluded = {kind.strip() for kind in sampling.get("excludedTypes", "").split(";")}
    assert not sampling["isEnabled"] or {"Trace", "Request", "Exception"} <= excluded


def test_the_batch_side_is_named_per_environment_and_can_be_left_to_its_owner():
    modules = parse(INFRA / "main.bicep")["modules"]
    for name in ("batchDiagnostics", "batchAccess"):
        assert modules[name]["config"]["condition"] == "manageBatchAccount", name
        assert body(modules[name])["name"].endswith("-${resourceToken}"), name  # two environments never meet
    text = (INFRA / "main.bicep").read_text()
    assert "var batchDiagnosticSettingName = 'taskcounts-servicelog-${resourceToken}'" in text
    assert body(one("Microsoft.Insights/diagnosticSettings"))["name"] == "settingName"
    assert "batchAccess.outputs" not in text  # the endpoint is read from the account, whoever runs it
    assert (
        '"manageBatchAccount": {"value": "${MANAGE_BATCH_ACCOUNT=true}"}'
        in (INFRA / "main.parameters.json").read_text()
    )


def test_the_service_log_outlasts_a_long_outage_and_durable_has_a_warm_instance():
    hub = body(one("Microsoft.EventHub/namespaces/eventhubs"))["properties"]
    assert hub["messageRetentionInDays"] == "messageRetentionInDays"
    retention = parse(INFRA / "app" / "servicelog-hub.bicep")["parameters"]["messageRetentionInDays"]
    assert retention["default"] == 7  # Standard's longest: the trigger holds its checkpoint while storage is down
    scale = body(one("Microsoft.Web/sites"))["properties"]["functionAppConfig"]["scaleAndConcurrency"]
    assert "'durable'" in json.dumps(scale) or '"durable"' in json.dumps(scale)
    assert parse(INFRA / "main.bicep")["parameters"]["durableAlwaysReady"]["default"] == 1


def test_extra_accounts_get_the_reader_role_and_in_the_hubs_region_the_service_log_each_in_its_own_group():
    modules = parse(INFRA / "main.bicep")["modules"]
    main_text = (INFRA / "main.bicep").read_text()
    for name in ("extraBatchDiagnostics", "extraBatchAccess"):
        module = body(modules[name])
        group = module["scope"]["function"]["parameters"]["resource_group_name"]["operator"]["operands"]
        assert group == {"operand_1": "account", "operand_2": "resourceGroup"}, name
        # nothing is deployed into the accounts' groups when their owner runs them
        assert f"module {name} " in main_text and "(manageBatchAccount ? extraBatchAccounts : [])" in main_text
    assert "deploySetting: toLower(account.location) == toLower(hubLocation)" in main_text
    diagnostics = (INFRA / "app" / "batch-diagnostics.bicep").read_text()
    assert "= if (deploySetting) {" in diagnostics
    # the app reads each extra account's endpoint and ARM id, known before deploying
    assert app_settings()["BATCH_EXTRA_ACCOUNTS"] == "batchExtraAccounts"
    assert "batchExtraAccounts: string(extraBatchAccountsSetting)" in main_text
    assert "url: 'https://${account.name}.${account.location}.batch.azure.com'" in main_text
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["extraBatchAccountsJson"] == {"value": "${AZURE_EXTRA_BATCH_ACCOUNTS=[]}"}
