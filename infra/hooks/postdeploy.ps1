# azd postdeploy hook (Windows): the same steps as postdeploy.sh. Creates (or updates) the Event Grid
# subscription to TaskEvents now that the code is deployed and answers Event Grid's validation
# handshake. Runs after every deploy (idempotent). Rerun alone with `azd hooks run postdeploy`.
$names = 'AZURE_SUBSCRIPTION_ID', 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME', 'EVENT_GRID_TOPIC_NAME',
         'STORAGE_ACCOUNT_NAME', 'EVENT_GRID_SCHEMA', 'EVENT_GRID_MAX_EVENTS_PER_BATCH', 'EVENT_GRID_PREFERRED_BATCH_KB',
         'EVENT_GRID_DEAD_LETTER_CONTAINER', 'ACCESS_MODE', 'ENTRA_TENANT_ID'
$missing = $names | Where-Object { [string]::IsNullOrEmpty([Environment]::GetEnvironmentVariable($_)) }
if ($missing) {
    [Console]::Error.WriteLine("postdeploy: the environment lacks $($missing -join ' ') (outputs of infra/main.bicep): run azd provision first")
    exit 1
}
if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    [Console]::Error.WriteLine("postdeploy: the Event Grid subscription to TaskEvents needs the Azure CLI: install it, az login, then azd hooks run postdeploy")
    exit 1
}

$template = Join-Path $PSScriptRoot '..' 'event-subscription.bicep'
$attempts = if ($env:POSTDEPLOY_ATTEMPTS) { [int] $env:POSTDEPLOY_ATTEMPTS } else { 3 }
$pause = if ($env:POSTDEPLOY_PAUSE_SECONDS) { [int] $env:POSTDEPLOY_PAUSE_SECONDS } else { 30 }
for ($attempt = 1; ; $attempt++) {
    # The first handshake can meet an app still starting after the deploy: try again after a pause.
    az deployment group create --name taskevents-subscription --subscription $env:AZURE_SUBSCRIPTION_ID `
        --resource-group $env:AZURE_RESOURCE_GROUP --template-file $template --output none `
        --parameters topicName=$($env:EVENT_GRID_TOPIC_NAME) functionAppName=$($env:AZURE_FUNCTION_APP_NAME) `
            eventSchema=$($env:EVENT_GRID_SCHEMA) maxEventsPerBatch=$($env:EVENT_GRID_MAX_EVENTS_PER_BATCH) `
            preferredBatchSizeInKilobytes=$($env:EVENT_GRID_PREFERRED_BATCH_KB) storageAccountName=$($env:STORAGE_ACCOUNT_NAME) `
            deadLetterContainerName=$($env:EVENT_GRID_DEAD_LETTER_CONTAINER) accessMode=$($env:ACCESS_MODE) `
            entraClientId=$($env:ENTRA_CLIENT_ID) entraTenantId=$($env:ENTRA_TENANT_ID)
    if ($LASTEXITCODE -eq 0) { break }
    if ($attempt -ge $attempts) {
        [Console]::Error.WriteLine("postdeploy: the Event Grid subscription was not created after $attempts attempts (see the error above); once the app answers, azd hooks run postdeploy")
        exit 1
    }
    [Console]::Error.WriteLine("postdeploy: attempt $attempt failed; trying again in $pause s")
    Start-Sleep -Seconds $pause
}
Write-Output "postdeploy: Event Grid delivers $($env:EVENT_GRID_TOPIC_NAME)'s task events to $($env:AZURE_FUNCTION_APP_NAME)/api/taskevents"

if ($env:MANAGE_BATCH_ACCOUNT -eq 'false') {
    # Someone else runs the Batch account: what only they can do, to run once.
    Write-Output "postdeploy: the Batch account is not managed by this deployment (manageBatchAccount=false). Its owner runs, once:"
    Write-Output "  az role assignment create --assignee-object-id $($env:MANAGED_IDENTITY_PRINCIPAL_ID) --assignee-principal-type ServicePrincipal --role 11076f67-66f6-4be0-8f6b-f0609fd05cc9 --scope $($env:BATCH_ACCOUNT_ID)"
    Write-Output "  az monitor diagnostic-settings create --name $($env:BATCH_DIAGNOSTIC_SETTING_NAME) --resource $($env:BATCH_ACCOUNT_ID) --event-hub $($env:SERVICE_LOG_HUB_NAME) --event-hub-rule $($env:SERVICE_LOG_RULE_ID) --logs '[{`"category`": `"ServiceLog`", `"enabled`": true}]'"
    Write-Output "Until then the app cannot list tasks (no validation, no delta sync) and reads no service log."
}
exit 0
