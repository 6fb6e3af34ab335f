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

if ! command -v az >/dev/null 2>&1 || ! az account show --output none >/dev/null 2>&1; then
  echo "preprovision: the Azure CLI is not signed in; the Batch account's region, authentication modes and network access are not checked" >&2
  exit 0
fi

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
[ "$problems" -eq 0 ] || exit 1
