#!/bin/sh
# azd postdeploy hook: create (or update) the Event Grid subscription to TaskEvents now that the code
# is deployed, because Event Grid validates a webhook when its subscription is created and only the
# deployed code answers. Runs after every deploy (idempotent), so `azd down` then `azd up` needs no
# manual step. Rerun alone with `azd hooks run postdeploy`. Same steps as postdeploy.ps1.
set -u

missing=""
for name in AZURE_SUBSCRIPTION_ID AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME EVENT_GRID_TOPIC_NAME \
            STORAGE_ACCOUNT_NAME EVENT_GRID_SCHEMA EVENT_GRID_MAX_EVENTS_PER_BATCH EVENT_GRID_PREFERRED_BATCH_KB \
            EVENT_GRID_DEAD_LETTER_CONTAINER ACCESS_MODE ENTRA_TENANT_ID; do
  eval "value=\${$name:-}"
  [ -n "$value" ] || missing="$missing $name"
done
if [ -n "$missing" ]; then
  echo "postdeploy: the environment lacks$missing (outputs of infra/main.bicep): run azd provision first" >&2
  exit 1
fi
if ! command -v az >/dev/null 2>&1; then
  echo "postdeploy: the Event Grid subscription to TaskEvents needs the Azure CLI: install it, az login, then azd hooks run postdeploy" >&2
  exit 1
fi

template="$(dirname "$0")/../event-subscription.bicep"
attempts=${POSTDEPLOY_ATTEMPTS:-3}
attempt=1
# The first handshake can meet an app still starting after the deploy: try again after a pause.
until az deployment group create --name taskevents-subscription --subscription "$AZURE_SUBSCRIPTION_ID" \
    --resource-group "$AZURE_RESOURCE_GROUP" --template-file "$template" --output none \
    --parameters topicName="$EVENT_GRID_TOPIC_NAME" functionAppName="$AZURE_FUNCTION_APP_NAME" \
      eventSchema="$EVENT_GRID_SCHEMA" maxEventsPerBatch="$EVENT_GRID_MAX_EVENTS_PER_BATCH" \
      preferredBatchSizeInKilobytes="$EVENT_GRID_PREFERRED_BATCH_KB" storageAccountName="$STORAGE_ACCOUNT_NAME" \
      deadLetterContainerName="$EVENT_GRID_DEAD_LETTER_CONTAINER" accessMode="$ACCESS_MODE" \
      entraClientId="${ENTRA_CLIENT_ID:-}" entraTenantId="$ENTRA_TENANT_ID"; do
  if [ "$attempt" -ge "$attempts" ]; then
    echo "postdeploy: the Event Grid subscription was not created after $attempts attempts (see the error above); once the app answers, azd hooks run postdeploy" >&2
    exit 1
  fi
  echo "postdeploy: attempt $attempt failed; trying again in ${POSTDEPLOY_PAUSE_SECONDS:-30} s" >&2
  sleep "${POSTDEPLOY_PAUSE_SECONDS:-30}"
  attempt=$((attempt + 1))
done
echo "postdeploy: Event Grid delivers $EVENT_GRID_TOPIC_NAME's task events to $AZURE_FUNCTION_APP_NAME/api/taskevents"

if [ "${MANAGE_BATCH_ACCOUNT:-true}" = "false" ]; then
  # Someone else runs the Batch account: what only they can do, to run once.
  echo "postdeploy: the Batch account is not managed by this deployment (manageBatchAccount=false). Its owner runs, once:"
  echo "  az role assignment create --assignee-object-id ${MANAGED_IDENTITY_PRINCIPAL_ID:-} --assignee-principal-type ServicePrincipal --role 11076f67-66f6-4be0-8f6b-f0609fd05cc9 --scope ${BATCH_ACCOUNT_ID:-}"
  echo "  az monitor diagnostic-settings create --name ${BATCH_DIAGNOSTIC_SETTING_NAME:-} --resource ${BATCH_ACCOUNT_ID:-} --event-hub ${SERVICE_LOG_HUB_NAME:-} --event-hub-rule ${SERVICE_LOG_RULE_ID:-} --logs '[{\"category\": \"ServiceLog\", \"enabled\": true}]'"
  echo "Until then the app cannot list tasks (no validation, no delta sync) and reads no service log."
fi
