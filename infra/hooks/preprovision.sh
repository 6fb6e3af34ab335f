#!/bin/sh
# azd preprovision hook: stop before anything is created when the environment lacks a value the
# deployment needs, saying which `azd env set` to run (`azd up --no-prompt` would otherwise stop at
# a prompt). With the Azure CLI signed in, also check the Batch account as the deployment needs it.
# Same checks as preprovision.ps1.
set -u

problems=0
problem() {
  echo "preprovision: $1" >&2
  problems=$((problems + 1))
}

require() {  # name, example value, what it is
  eval "value=\${$1:-}"
  if [ -z "$value" ]; then
    problem "$1 is not set ($3): azd env set $1 $2"
  fi
}

require AZURE_LOCATION westeurope "the region of the app"
require AZURE_BATCH_ACCOUNT_NAME contosobatch "the Batch account whose jobs are counted"
require AZURE_BATCH_RESOURCE_GROUP rg-batch "the Batch account's resource group, in this subscription"

# Access (docs/access.md): keys mode makes each missing key once and keeps it in the azd environment.
case "${ACCESS_MODE:-keys}" in
  keys)
    for name in TASKCOUNTS_READ_KEY TASKCOUNTS_INGEST_KEY TASKCOUNTS_OPERATE_KEY; do
      eval "value=\${$name:-}"
      [ -z "$value" ] || continue
      key=$(python3 -c "import secrets; print(secrets.token_urlsafe(32))" 2>/dev/null) \
        || key=$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')
      if [ -z "$key" ] || ! azd env set "$name" "$key" >/dev/null; then
        problem "$name could not be made (needs azd, and python3 or openssl): azd env set $name <a random key of 16-256 characters>"
      else
        echo "preprovision: made $name; read it with: azd env get-value $name"
      fi
    done ;;
  entra)
    [ -n "${ENTRA_CLIENT_ID:-}" ] || problem "ACCESS_MODE is entra but ENTRA_CLIENT_ID is not set (the app registration, docs/access.md): azd env set ENTRA_CLIENT_ID <application id>" ;;
  *)
    problem "ACCESS_MODE must be keys or entra, got '$ACCESS_MODE': azd env set ACCESS_MODE keys" ;;
esac
[ "$problems" -eq 0 ] || exit 1

# The Azure CLI creates the Event Grid subscription after the deploy and checks everything below:
# without it the deployment would fail half-way, after the app exists.
AZ_MIN_VERSION=2.60.0  # Flex Consumption in the CLI
tenant_hint=${AZURE_TENANT_ID:+ --tenant $AZURE_TENANT_ID}
if ! command -v az >/dev/null 2>&1; then
  problem "the Azure CLI (az) is not installed; it checks this deployment and creates its Event Grid subscription: install it (https://aka.ms/installazurecli), then az login$tenant_hint"
  exit 1
fi
az_version=$(az version --query '"azure-cli"' --output tsv 2>/dev/null)
if ! printf '%s\n%s\n' "$AZ_MIN_VERSION" "${az_version:-0}" | awk -F. '
    NR == 1 { for (i = 1; i <= 3; i++) need[i] = $i + 0 }
    NR == 2 { for (i = 1; i <= 3; i++) { have = $i + 0; if (have > need[i]) exit 0; if (have < need[i]) exit 1 } }'; then
  problem "the Azure CLI is ${az_version:-of unknown version}; this deployment needs $AZ_MIN_VERSION or later: az upgrade"
  exit 1
fi
if ! az account show --output none >/dev/null 2>&1; then
  problem "the Azure CLI is not signed in (azd and az sign in separately): az login$tenant_hint"
  exit 1
fi
signed_in=$(az account show --query "[id, tenantId]" --output tsv | tr '\n' ' ')
set -- $signed_in
if [ -n "${AZURE_TENANT_ID:-}" ] && [ "$2" != "$AZURE_TENANT_ID" ]; then
  problem "the Azure CLI is signed in to tenant $2 but azd deploys to $AZURE_TENANT_ID: az login --tenant $AZURE_TENANT_ID"
  exit 1
fi
if [ -n "${AZURE_SUBSCRIPTION_ID:-}" ] && [ "$1" != "$AZURE_SUBSCRIPTION_ID" ]; then
  problem "the Azure CLI uses subscription $1 but azd deploys to $AZURE_SUBSCRIPTION_ID: az account set --subscription $AZURE_SUBSCRIPTION_ID"
  exit 1
fi
subscription=${AZURE_SUBSCRIPTION_ID:-$1}

# The region: Flex Consumption, with Python 3.11.
if ! az functionapp list-flexconsumption-locations --query "[].name" --output tsv 2>/dev/null \
    | tr 'A-Z' 'a-z' | tr -d ' ' | grep -qx "$(printf '%s' "$AZURE_LOCATION" | tr 'A-Z' 'a-z' | tr -d ' ')"; then
  problem "the region $AZURE_LOCATION offers no Flex Consumption plan (az functionapp list-flexconsumption-locations): azd env set AZURE_LOCATION <one of those>"
elif ! az functionapp list-flexconsumption-runtimes --location "$AZURE_LOCATION" --runtime python --query "[].version" \
    --output tsv 2>/dev/null | grep -qx "3.11"; then
  problem "Flex Consumption in $AZURE_LOCATION does not offer Python 3.11 (az functionapp list-flexconsumption-runtimes --location $AZURE_LOCATION --runtime python): azd env set AZURE_LOCATION <another region>"
fi

# Rights, as Azure computes them for the signed-in identity (each role's actions minus its notActions).
allowed() {  # scope URL, action: 0 when some role grants it there
  az rest --method get --url "https://management.azure.com$1/providers/Microsoft.Authorization/permissions?api-version=2022-04-01" \
    --query "value[].[join(' ', actions), join(' ', notActions)]" --output tsv 2>/dev/null | awk -F '\t' -v action="$2" '
    function matches(pattern, text) { gsub(/[.]/, "\\.", pattern); gsub(/[*]/, ".*", pattern); return text ~ ("^" pattern "$") }
    BEGIN { action = tolower(action); found = 1 }
    { granted = 0; n = split(tolower($1), grants, " "); for (i = 1; i <= n; i++) if (matches(grants[i], action)) granted = 1
      n = split(tolower($2), denials, " "); for (i = 1; i <= n; i++) if (matches(denials[i], action)) granted = 0
      if (granted) found = 0 }
    END { exit found }'
}
need() {  # scope URL, where (words), action, why
  allowed "$1" "$3" || problem "you lack $3 on $2 ($4): ask for a role that grants it there (e.g. Owner, or Role Based Access Control Administrator for role assignments)${5:-}"
}
at_subscription="/subscriptions/$subscription"
need "$at_subscription" "the subscription" Microsoft.Resources/subscriptions/resourceGroups/write "the app's resource group"
need "$at_subscription" "the subscription" Microsoft.Resources/deployments/write "the deployment"
need "$at_subscription" "the subscription" Microsoft.Authorization/roleAssignments/write "the app identity's roles on its storage, hub and telemetry"
need "$at_subscription" "the subscription" Microsoft.EventHub/namespaces/authorizationRules/listKeys/action "the diagnostic setting's hub rule"
if [ "${MANAGE_BATCH_ACCOUNT:-true}" != "false" ]; then
  at_batch="$at_subscription/resourceGroups/$AZURE_BATCH_RESOURCE_GROUP"
  hand_over="; or let the account's owner do it: azd env set MANAGE_BATCH_ACCOUNT false"
  need "$at_batch" "resource group $AZURE_BATCH_RESOURCE_GROUP" Microsoft.Resources/deployments/write "the Batch-side deployments" "$hand_over"
  need "$at_batch" "resource group $AZURE_BATCH_RESOURCE_GROUP" Microsoft.Authorization/roleAssignments/write "the app's reader role on the Batch account" "$hand_over"
  need "$at_batch" "resource group $AZURE_BATCH_RESOURCE_GROUP" Microsoft.Insights/diagnosticSettings/write "the Batch account's service log to the hub" "$hand_over"
fi
[ "$problems" -eq 0 ] || exit 1

batch_query() {
  az batch account show --name "$AZURE_BATCH_ACCOUNT_NAME" --resource-group "$AZURE_BATCH_RESOURCE_GROUP" \
    ${AZURE_SUBSCRIPTION_ID:+--subscription "$AZURE_SUBSCRIPTION_ID"} --query "$1" --output tsv
}

if ! batch_location=$(batch_query location 2>/dev/null); then
  problem "no Batch account $AZURE_BATCH_ACCOUNT_NAME in resource group $AZURE_BATCH_RESOURCE_GROUP of this subscription: check AZURE_BATCH_ACCOUNT_NAME and AZURE_BATCH_RESOURCE_GROUP"
  exit 1
fi
hub_location=${AZURE_BATCH_LOCATION:-$AZURE_LOCATION}
if [ "$batch_location" != "$hub_location" ]; then
  problem "the Batch account is in $batch_location but the service log's event hub would be in $hub_location (Azure Monitor streams only to a hub in the account's region): azd env set AZURE_BATCH_LOCATION $batch_location"
fi
modes=$(batch_query allowedAuthenticationModes)
case "$modes" in
  ""|*AAD*) ;;
  *) problem "the Batch account does not allow Microsoft Entra ID (allowedAuthenticationModes: $modes); the app reads Batch with its managed identity: add AAD to the account's authentication modes" ;;
esac
if [ "$(batch_query publicNetworkAccess)" = "Disabled" ]; then
  problem "the Batch account's public network access is Disabled; the app (Flex Consumption, no virtual network) reaches Batch on its public endpoint: enable it, or integrate the app with the account's network"
fi

# Further accounts (AZURE_EXTRA_BATCH_ACCOUNTS, JSON; read with python3): each exists in its group and
# region as given, and, when this deployment manages them, the same rights on its group.
example='[{"name": "teamb", "resourceGroup": "rg-teamb", "location": "westeurope"}]'
if [ -n "${AZURE_EXTRA_BATCH_ACCOUNTS:-}" ] && [ "$AZURE_EXTRA_BATCH_ACCOUNTS" != "[]" ]; then
  if ! extras=$(python3 -c '
import json, re, sys
accounts = json.loads(sys.argv[1])
assert isinstance(accounts, list)
for account in accounts:
    values = [account.get(field) for field in ("name", "resourceGroup", "location")]
    assert all(isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9._()-]+", value) for value in values)
    print(" ".join(values))
' "$AZURE_EXTRA_BATCH_ACCOUNTS" 2>/dev/null); then
    problem "AZURE_EXTRA_BATCH_ACCOUNTS must be a JSON list of accounts, each with name, resourceGroup and location (and python3 must be installed to read it): azd env set AZURE_EXTRA_BATCH_ACCOUNTS '$example'"
    exit 1
  fi
  echo "$extras" | while read -r name group location; do
    found=$(az batch account show --name "$name" --resource-group "$group" \
      ${AZURE_SUBSCRIPTION_ID:+--subscription "$AZURE_SUBSCRIPTION_ID"} --query location --output tsv 2>/dev/null) || found=""
    if [ -z "$found" ]; then
      echo "preprovision: no Batch account $name in resource group $group of this subscription: check AZURE_EXTRA_BATCH_ACCOUNTS" >&2
    elif [ "$found" != "$location" ]; then
      echo "preprovision: the Batch account $name is in $found, not $location: correct its location in AZURE_EXTRA_BATCH_ACCOUNTS" >&2
    fi
  done 2>&1 | grep . >&2 && problem "fix the extra Batch accounts above"
  if [ "${MANAGE_BATCH_ACCOUNT:-true}" != "false" ]; then
    for group in $(echo "$extras" | awk '{print $2}' | sort -u); do
      need "$at_subscription/resourceGroups/$group" "resource group $group" Microsoft.Authorization/roleAssignments/write "the app's reader role on an extra Batch account" "$hand_over"
      need "$at_subscription/resourceGroups/$group" "resource group $group" Microsoft.Insights/diagnosticSettings/write "an extra Batch account's service log to the hub" "$hand_over"
    done
  fi
fi
[ "$problems" -eq 0 ] || exit 1
