#!/bin/sh
# azd predown hook: remove what this environment put on the Batch account, which `azd down` leaves
# (it lives in the Batch account's resource group, which azd >= 1.24.1 rightly does not delete):
# the diagnostic setting (an account allows five) and the app identity's reader role. Idempotent:
# what is already gone is fine. Skipped when someone else runs the account (manageBatchAccount=false).
# Same steps as predown.ps1.
set -u

if [ "${MANAGE_BATCH_ACCOUNT:-true}" = "false" ]; then
  echo "predown: the Batch account is not managed by this deployment; its owner removes the diagnostic setting ${BATCH_DIAGNOSTIC_SETTING_NAME:-} and the role of ${MANAGED_IDENTITY_PRINCIPAL_ID:-}"
  exit 0
fi
if [ -z "${BATCH_ACCOUNT_ID:-}" ] || [ -z "${BATCH_DIAGNOSTIC_SETTING_NAME:-}" ] || [ -z "${MANAGED_IDENTITY_PRINCIPAL_ID:-}" ]; then
  echo "predown: nothing was provisioned on the Batch account by this environment (no outputs); nothing to remove"
  exit 0
fi
if ! command -v az >/dev/null 2>&1 || ! az account show --output none >/dev/null 2>&1; then
  echo "predown: the Azure CLI is missing or not signed in, so the Batch account keeps taskcounts' diagnostic setting and role: az login, then azd down again" >&2
  exit 1
fi

failed=0
reader=11076f67-66f6-4be0-8f6b-f0609fd05cc9  # Azure Batch Account Reader
# Every account counted (BATCH_ACCOUNT_IDS: the default one and the extra ones; older environments: the one)
for account_id in ${BATCH_ACCOUNT_IDS:-$BATCH_ACCOUNT_ID}; do
  if az monitor diagnostic-settings show --name "$BATCH_DIAGNOSTIC_SETTING_NAME" --resource "$account_id" --output none >/dev/null 2>&1; then
    az monitor diagnostic-settings delete --name "$BATCH_DIAGNOSTIC_SETTING_NAME" --resource "$account_id" || failed=1
  fi
  if [ -n "$(az role assignment list --assignee "$MANAGED_IDENTITY_PRINCIPAL_ID" --role "$reader" --scope "$account_id" --query "[].id" --output tsv 2>/dev/null)" ]; then
    az role assignment delete --assignee "$MANAGED_IDENTITY_PRINCIPAL_ID" --role "$reader" --scope "$account_id" || failed=1
  fi
done
if [ "$failed" -ne 0 ]; then
  echo "predown: could not remove all of taskcounts' settings from the Batch account (see above); fix, then azd down again" >&2
  exit 1
fi
echo "predown: the Batch account no longer streams its service log to this environment nor grants it the reader role"
