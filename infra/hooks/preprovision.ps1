# azd preprovision hook (Windows): the same checks as preprovision.sh. Stops before anything is
# created when the environment lacks a value the deployment needs, saying which `azd env set` to run;
# with the Azure CLI signed in, also checks the Batch account as the deployment needs it.
$problems = 0
function Report-Problem([string] $message) {
    [Console]::Error.WriteLine("preprovision: $message")
    $script:problems++
}

function Require-Value([string] $name, [string] $example, [string] $what) {
    if ([string]::IsNullOrEmpty([Environment]::GetEnvironmentVariable($name))) {
        Report-Problem "$name is not set ($what): azd env set $name $example"
    }
}

Require-Value 'AZURE_LOCATION' 'westeurope' 'the region of the app'
Require-Value 'AZURE_BATCH_ACCOUNT_NAME' 'contosobatch' 'the Batch account whose jobs are counted'
Require-Value 'AZURE_BATCH_RESOURCE_GROUP' 'rg-batch' "the Batch account's resource group, in this subscription"

# Access (docs/access.md): keys mode makes each missing key once and keeps it in the azd environment.
$accessMode = if ($env:ACCESS_MODE) { $env:ACCESS_MODE } else { 'keys' }
if ($accessMode -eq 'keys') {
    foreach ($name in 'TASKCOUNTS_READ_KEY', 'TASKCOUNTS_INGEST_KEY', 'TASKCOUNTS_OPERATE_KEY') {
        if (-not [string]::IsNullOrEmpty([Environment]::GetEnvironmentVariable($name))) { continue }
        $bytes = [System.Security.Cryptography.RandomNumberGenerator]::GetBytes(32)
        $key = [Convert]::ToBase64String($bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_')
        azd env set $name $key | Out-Null
        if ($LASTEXITCODE -ne 0) {
            Report-Problem "$name could not be made (needs azd): azd env set $name <a random key of 16-256 characters>"
        } else {
            Write-Host "preprovision: made $name; read it with: azd env get-value $name"
        }
    }
} elseif ($accessMode -eq 'entra') {
    if ([string]::IsNullOrEmpty($env:ENTRA_CLIENT_ID)) {
        Report-Problem "ACCESS_MODE is entra but ENTRA_CLIENT_ID is not set (the app registration, docs/access.md): azd env set ENTRA_CLIENT_ID <application id>"
    }
} else {
    Report-Problem "ACCESS_MODE must be keys or entra, got '$accessMode': azd env set ACCESS_MODE keys"
}
if ($problems -gt 0) { exit 1 }

$az = Get-Command az -ErrorAction SilentlyContinue
if (-not $az) {
    [Console]::Error.WriteLine("preprovision: the Azure CLI is not signed in; the Batch account's region, authentication modes and network access are not checked")
    exit 0
}
az account show --output none 2>$null
if ($LASTEXITCODE -ne 0) {
    [Console]::Error.WriteLine("preprovision: the Azure CLI is not signed in; the Batch account's region, authentication modes and network access are not checked")
    exit 0
}

function Get-BatchValue([string] $query) {
    $arguments = @('batch', 'account', 'show', '--name', $env:AZURE_BATCH_ACCOUNT_NAME,
                   '--resource-group', $env:AZURE_BATCH_RESOURCE_GROUP, '--query', $query, '--output', 'tsv')
    if ($env:AZURE_SUBSCRIPTION_ID) { $arguments += @('--subscription', $env:AZURE_SUBSCRIPTION_ID) }
    return (& az @arguments 2>$null)
}

$batchLocation = Get-BatchValue 'location'
if ($LASTEXITCODE -ne 0 -or -not $batchLocation) {
    Report-Problem "no Batch account $($env:AZURE_BATCH_ACCOUNT_NAME) in resource group $($env:AZURE_BATCH_RESOURCE_GROUP) of this subscription: check AZURE_BATCH_ACCOUNT_NAME and AZURE_BATCH_RESOURCE_GROUP"
    exit 1
}
$hubLocation = if ($env:AZURE_BATCH_LOCATION) { $env:AZURE_BATCH_LOCATION } else { $env:AZURE_LOCATION }
if ($batchLocation -ne $hubLocation) {
    Report-Problem "the Batch account is in $batchLocation but the service log's event hub would be in $hubLocation (Azure Monitor streams only to a hub in the account's region): azd env set AZURE_BATCH_LOCATION $batchLocation"
}
$modes = (Get-BatchValue 'allowedAuthenticationModes') -join ' '
if ($modes -and $modes -notmatch 'AAD') {
    Report-Problem "the Batch account does not allow Microsoft Entra ID (allowedAuthenticationModes: $modes); the app reads Batch with its managed identity: add AAD to the account's authentication modes"
}
if ((Get-BatchValue 'publicNetworkAccess') -eq 'Disabled') {
    Report-Problem "the Batch account's public network access is Disabled; the app (Flex Consumption, no virtual network) reaches Batch on its public endpoint: enable it, or integrate the app with the account's network"
}
if ($problems -gt 0) { exit 1 }
exit 0
