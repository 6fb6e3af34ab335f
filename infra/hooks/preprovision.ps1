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

# The Azure CLI creates the Event Grid subscription after the deploy and checks everything below:
# without it the deployment would fail half-way, after the app exists.
$azMinVersion = [version] '2.60.0'  # Flex Consumption in the CLI
$tenantHint = if ($env:AZURE_TENANT_ID) { " --tenant $($env:AZURE_TENANT_ID)" } else { '' }
if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    Report-Problem "the Azure CLI (az) is not installed; it checks this deployment and creates its Event Grid subscription: install it (https://aka.ms/installazurecli), then az login$tenantHint"
    exit 1
}
$azVersion = (az version --output json 2>$null | ConvertFrom-Json).'azure-cli'
if (-not $azVersion -or [version] $azVersion -lt $azMinVersion) {
    Report-Problem "the Azure CLI is $azVersion; this deployment needs $azMinVersion or later: az upgrade"
    exit 1
}
az account show --output none 2>$null
if ($LASTEXITCODE -ne 0) {
    Report-Problem "the Azure CLI is not signed in (azd and az sign in separately): az login$tenantHint"
    exit 1
}
$signedIn = az account show --query "[id, tenantId]" --output tsv
if ($env:AZURE_TENANT_ID -and $signedIn[1] -ne $env:AZURE_TENANT_ID) {
    Report-Problem "the Azure CLI is signed in to tenant $($signedIn[1]) but azd deploys to $($env:AZURE_TENANT_ID): az login --tenant $($env:AZURE_TENANT_ID)"
    exit 1
}
if ($env:AZURE_SUBSCRIPTION_ID -and $signedIn[0] -ne $env:AZURE_SUBSCRIPTION_ID) {
    Report-Problem "the Azure CLI uses subscription $($signedIn[0]) but azd deploys to $($env:AZURE_SUBSCRIPTION_ID): az account set --subscription $($env:AZURE_SUBSCRIPTION_ID)"
    exit 1
}
$subscription = if ($env:AZURE_SUBSCRIPTION_ID) { $env:AZURE_SUBSCRIPTION_ID } else { $signedIn[0] }

# The region: Flex Consumption, with Python 3.11.
$normalized = ($env:AZURE_LOCATION -replace ' ', '').ToLower()
$flexRegions = (az functionapp list-flexconsumption-locations --query "[].name" --output tsv 2>$null) | ForEach-Object { ($_ -replace ' ', '').ToLower() }
if ($flexRegions -notcontains $normalized) {
    Report-Problem "the region $($env:AZURE_LOCATION) offers no Flex Consumption plan (az functionapp list-flexconsumption-locations): azd env set AZURE_LOCATION <one of those>"
} elseif ((az functionapp list-flexconsumption-runtimes --location $env:AZURE_LOCATION --runtime python --query "[].version" --output tsv 2>$null) -notcontains '3.11') {
    Report-Problem "Flex Consumption in $($env:AZURE_LOCATION) does not offer Python 3.11 (az functionapp list-flexconsumption-runtimes --location $($env:AZURE_LOCATION) --runtime python): azd env set AZURE_LOCATION <another region>"
}

# Rights, as Azure computes them for the signed-in identity (each role's actions minus its notActions).
function Test-Allowed([string] $scope, [string] $action) {
    $url = "https://management.azure.com$scope/providers/Microsoft.Authorization/permissions?api-version=2022-04-01"
    $permissions = (az rest --method get --url $url --output json 2>$null | ConvertFrom-Json).value
    foreach ($permission in $permissions) {
        $granted = @($permission.actions | Where-Object { $action -like $_ }).Count -gt 0
        $denied = @($permission.notActions | Where-Object { $action -like $_ }).Count -gt 0
        if ($granted -and -not $denied) { return $true }
    }
    return $false
}
function Require-Right([string] $scope, [string] $where, [string] $action, [string] $why, [string] $handOver = '') {
    if (-not (Test-Allowed $scope $action)) {
        Report-Problem "you lack $action on $where ($why): ask for a role that grants it there (e.g. Owner, or Role Based Access Control Administrator for role assignments)$handOver"
    }
}
$atSubscription = "/subscriptions/$subscription"
Require-Right $atSubscription 'the subscription' 'Microsoft.Resources/subscriptions/resourceGroups/write' "the app's resource group"
Require-Right $atSubscription 'the subscription' 'Microsoft.Resources/deployments/write' 'the deployment'
Require-Right $atSubscription 'the subscription' 'Microsoft.Authorization/roleAssignments/write' "the app identity's roles on its storage, hub and telemetry"
Require-Right $atSubscription 'the subscription' 'Microsoft.EventHub/namespaces/authorizationRules/listKeys/action' "the diagnostic setting's hub rule"
if ($env:MANAGE_BATCH_ACCOUNT -ne 'false') {
    $atBatch = "$atSubscription/resourceGroups/$($env:AZURE_BATCH_RESOURCE_GROUP)"
    $where = "resource group $($env:AZURE_BATCH_RESOURCE_GROUP)"
    $handOver = '; or let the account''s owner do it: azd env set MANAGE_BATCH_ACCOUNT false'
    Require-Right $atBatch $where 'Microsoft.Resources/deployments/write' 'the Batch-side deployments' $handOver
    Require-Right $atBatch $where 'Microsoft.Authorization/roleAssignments/write' "the app's reader role on the Batch account" $handOver
    Require-Right $atBatch $where 'Microsoft.Insights/diagnosticSettings/write' "the Batch account's service log to the hub" $handOver
}
if ($problems -gt 0) { exit 1 }

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

# Further accounts (AZURE_EXTRA_BATCH_ACCOUNTS, JSON): each exists in its group and region as given,
# and, when this deployment manages them, the same rights on its group.
$example = '[{"name": "teamb", "resourceGroup": "rg-teamb", "location": "westeurope"}]'
if ($env:AZURE_EXTRA_BATCH_ACCOUNTS -and $env:AZURE_EXTRA_BATCH_ACCOUNTS -ne '[]') {
    try { $extras = @($env:AZURE_EXTRA_BATCH_ACCOUNTS | ConvertFrom-Json) } catch { $extras = $null }
    if (-not $extras -or ($extras | Where-Object { -not $_.name -or -not $_.resourceGroup -or -not $_.location })) {
        Report-Problem "AZURE_EXTRA_BATCH_ACCOUNTS must be a JSON list of accounts, each with name, resourceGroup and location: azd env set AZURE_EXTRA_BATCH_ACCOUNTS '$example'"
        exit 1
    }
    foreach ($extra in $extras) {
        $arguments = @('batch', 'account', 'show', '--name', $extra.name, '--resource-group', $extra.resourceGroup,
                       '--query', 'location', '--output', 'tsv')
        if ($env:AZURE_SUBSCRIPTION_ID) { $arguments += @('--subscription', $env:AZURE_SUBSCRIPTION_ID) }
        $found = (& az @arguments 2>$null)
        if (-not $found) {
            Report-Problem "no Batch account $($extra.name) in resource group $($extra.resourceGroup) of this subscription: check AZURE_EXTRA_BATCH_ACCOUNTS"
        } elseif ($found -ne $extra.location) {
            Report-Problem "the Batch account $($extra.name) is in $found, not $($extra.location): correct its location in AZURE_EXTRA_BATCH_ACCOUNTS"
        }
        if ($env:MANAGE_BATCH_ACCOUNT -ne 'false') {
            $atGroup = "$atSubscription/resourceGroups/$($extra.resourceGroup)"
            $where = "resource group $($extra.resourceGroup)"
            Require-Right $atGroup $where 'Microsoft.Authorization/roleAssignments/write' "the app's reader role on an extra Batch account" $handOver
            Require-Right $atGroup $where 'Microsoft.Insights/diagnosticSettings/write' "an extra Batch account's service log to the hub" $handOver
        }
    }
}
if ($problems -gt 0) { exit 1 }
exit 0
