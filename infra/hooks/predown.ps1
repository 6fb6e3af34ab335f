# azd predown hook (Windows): the same steps as predown.sh. Removes what this environment put on the
# Batch account, which `azd down` leaves: the diagnostic setting and the app identity's reader role.
if ($env:MANAGE_BATCH_ACCOUNT -eq 'false') {
    Write-Output "predown: the Batch account is not managed by this deployment; its owner removes the diagnostic setting $($env:BATCH_DIAGNOSTIC_SETTING_NAME) and the role of $($env:MANAGED_IDENTITY_PRINCIPAL_ID)"
    exit 0
}
if (-not $env:BATCH_ACCOUNT_ID -or -not $env:BATCH_DIAGNOSTIC_SETTING_NAME -or -not $env:MANAGED_IDENTITY_PRINCIPAL_ID) {
    Write-Output "predown: nothing was provisioned on the Batch account by this environment (no outputs); nothing to remove"
    exit 0
}
if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    [Console]::Error.WriteLine("predown: the Azure CLI is missing, so the Batch account keeps taskcounts' diagnostic setting and role: install it, az login, then azd down again")
    exit 1
}
az account show --output none 2>$null
if ($LASTEXITCODE -ne 0) {
    [Console]::Error.WriteLine("predown: the Azure CLI is not signed in, so the Batch account keeps taskcounts' diagnostic setting and role: az login, then azd down again")
    exit 1
}
$failed = $false
$reader = '11076f67-66f6-4be0-8f6b-f0609fd05cc9'  # Azure Batch Account Reader
# Every account counted (BATCH_ACCOUNT_IDS: the default one and the extra ones; older environments: the one)
$accountIds = if ($env:BATCH_ACCOUNT_IDS) { $env:BATCH_ACCOUNT_IDS -split ' ' } else { @($env:BATCH_ACCOUNT_ID) }
foreach ($accountId in $accountIds) {
    az monitor diagnostic-settings show --name $env:BATCH_DIAGNOSTIC_SETTING_NAME --resource $accountId --output none 2>$null
    if ($LASTEXITCODE -eq 0) {
        az monitor diagnostic-settings delete --name $env:BATCH_DIAGNOSTIC_SETTING_NAME --resource $accountId
        if ($LASTEXITCODE -ne 0) { $failed = $true }
    }
    $assigned = az role assignment list --assignee $env:MANAGED_IDENTITY_PRINCIPAL_ID --role $reader --scope $accountId --query "[].id" --output tsv 2>$null
    if ($assigned) {
        az role assignment delete --assignee $env:MANAGED_IDENTITY_PRINCIPAL_ID --role $reader --scope $accountId
        if ($LASTEXITCODE -ne 0) { $failed = $true }
    }
}
if ($failed) {
    [Console]::Error.WriteLine("predown: could not remove all of taskcounts' settings from the Batch account (see above); fix, then azd down again")
    exit 1
}
Write-Output "predown: the Batch account no longer streams its service log to this environment nor grants it the reader role"
exit 0
