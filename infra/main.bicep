// taskcounts on Azure: a Function App (Flex Consumption) with a managed identity, its storage,
// Application Insights, Batch's service log streamed to Event Hubs, an Event Grid topic for task
// events, and read access to a Batch account.
//   azd up   (preprovision hook: checks the environment; provision; deploy the code;
//             postdeploy hook: the topic's webhook subscription, infra/event-subscription.bicep)
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; also seeds the resource names.')
param environmentName string

@minLength(1)
@description('Region of every resource.')
param location string

@description('Resource group to create; default rg-<environmentName>.')
param resourceGroupName string = ''

@description('The Batch account whose jobs are counted and validated.')
param batchAccountName string

@description('Resource group of the Batch account (may differ from the app\'s).')
param batchAccountResourceGroup string

@description('The schema producers publish in (the topic\'s input schema; the subscription delivers the same).')
@allowed([
  'EventGridSchema'
  'CloudEventSchemaV1_0'
])
param eventSchema string = 'EventGridSchema'

@minValue(1)
@maxValue(5000)
param maxEventsPerBatch int = 1000

@minValue(1)
@maxValue(1024)
param preferredBatchSizeInKilobytes int = 1024

@description('Principal ids allowed to publish task events to the topic (EventGrid Data Sender).')
param publisherPrincipalIds array = []

param tablePrefix string = 'taskcounts'

@description('Partitions of a new job that Batch cannot size (the least a job gets).')
@minValue(1)
@maxValue(256)
param jobPartitions int = 1

@description('Task rows a partition is sized for: a job gets partitions for its size, and more as it grows.')
@minValue(1)
param jobPartitionRows int = 20000

param validationMaxTasks int = 200000
@minValue(1)
@maxValue(64)
@description('List Tasks pages in flight per job during validation.')
param validationParallelListings int = 8
param validationSchedule string = '0 */5 * * * *'
param retentionDays int = 7

@description('The Batch account\'s region (its service log can only stream to an event hub there); empty: location.')
param batchAccountLocation string = ''

@description('The delta sync from List Tasks (tasks added, changes no log reported): six-field NCRONTAB.')
param taskSyncSchedule string = '*/10 * * * * *'
@minValue(1)
param taskSyncMaxJobs int = 2000
@minValue(1)
param taskSyncMaxPages int = 20
@minValue(0)
param taskSyncOverlapSeconds int = 30

@description('How often each job\'s progress point is recorded and stalls are checked: six-field NCRONTAB.')
param progressSchedule string = '*/30 * * * * *'
@description('How often the summaries of the jobs that changed (the jobs list, the fleet\'s totals) are brought up to date: six-field NCRONTAB.')
param summarySchedule string = '*/5 * * * * *'
@minValue(1)
param progressWindowMinutes int = 10
@minValue(10)
@maxValue(10000)
param progressMaxPoints int = 1000
@minValue(1)
@description('Tasks left and nothing completed for this long: the job is stalled (alerted once per stall).')
param stallMinutes int = 15
@minValue(1)
@maxValue(100)
@description('Recent failed / completed at or above this percentage: the job is failing (alerted once per spell).')
param failureAlertPercent int = 20
@minValue(0)
@maxValue(5000)
@description('A job\'s counts may be answered from a read this many milliseconds old, refreshed in the background while polled (0: always read).')
param countsMaxAgeMs int = 250
@minValue(1)
@maxValue(10000)
@description('Batch requests a second each app instance may send (sync, validation, sizing new jobs; retries count); a 429 or 503 pauses them all for its Retry-After.')
param batchRequestsPerSecond int = 25
@minValue(0)
@maxValue(1440)
@description('A job whose counts or history were read this many minutes ago is synced every second (0: none is).')
param watchMinutes int = 5
@description('false: someone else runs the Batch account. Its diagnostic setting and the role on it are not deployed here; the postdeploy hook prints the two commands its owner runs.')
param manageBatchAccount bool = true
@description('Further Batch accounts counted besides batchAccountName, as JSON: [{"name": "...", "resourceGroup": "...", "location": "westeurope"}], in this subscription. Each gets the reader role; one in the hub\'s region also its ServiceLog diagnostic setting (a setting streams only to a hub in its account\'s region: an account elsewhere is counted from List Tasks alone).')
param extraBatchAccountsJson string = '[]'
@description('E-mail addresses the stalled and failing alerts go to.')
param alertEmails array = []
@description('Who may call the API: keys (a key per kind of access) or entra (Microsoft Entra ID sign-in through App Service Authentication, with app roles). docs/access.md.')
@allowed([
  'keys'
  'entra'
])
param accessMode string = 'keys'
@secure()
@description('keys mode: the read keys, comma-separated (the preprovision hook makes one).')
param readKeys string = ''
@secure()
@description('keys mode: the ingest keys (the Event Grid subscription sends the first).')
param ingestKeys string = ''
@secure()
@description('keys mode: the operate keys.')
param operateKeys string = ''
@description('entra mode: the application (client) id of the app registration made as docs/access.md says.')
param entraClientId string = ''
@description('entra mode: the tenant of the app registration.')
param entraTenantId string = tenant().tenantId

@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100
@minValue(0)
@maxValue(10)
@description('Always-ready instances of the Durable Functions group (validation); Microsoft recommends 1 for Durable Functions on Flex Consumption. Billed while idle; 0 scales it from zero.')
param durableAlwaysReady int = 1

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var deploymentContainerName = 'app-package-${resourceToken}'
var deadLetterContainerName = 'taskevents-deadletter'
// Named per environment: a second environment on the same Batch account gets a setting of its own
// rather than silently taking over the first one's.
var batchDiagnosticSettingName = 'taskcounts-servicelog-${resourceToken}'
var hubLocation = empty(batchAccountLocation) ? location : batchAccountLocation
var extraBatchAccounts = json(extraBatchAccountsJson)
var extraBatchAccountIds = [for account in extraBatchAccounts: resourceId(subscription().subscriptionId, account.resourceGroup, 'Microsoft.Batch/batchAccounts', account.name)]
// What the app reads (BATCH_EXTRA_ACCOUNTS): each account's endpoint and ARM id, known before deploying.
var extraBatchAccountsSetting = [for account in extraBatchAccounts: {
  name: account.name
  url: 'https://${account.name}.${account.location}.batch.azure.com'
  resourceId: resourceId(subscription().subscriptionId, account.resourceGroup, 'Microsoft.Batch/batchAccounts', account.name)
}]

// Read only (no deployment into its resource group): the app needs its endpoint in every mode.
resource batchAccount 'Microsoft.Batch/batchAccounts@2024-07-01' existing = {
  name: batchAccountName
  scope: resourceGroup(batchAccountResourceGroup)
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-taskcounts-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-taskcounts-${resourceToken}'
    applicationInsightsName: 'appi-taskcounts-${resourceToken}'
    location: location
    tags: tags
  }
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    actionGroupName: 'ag-taskcounts-${resourceToken}'
    location: location
    tags: tags
    alertEmails: alertEmails
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'sttc${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
  }
}

module serviceLogHub 'app/servicelog-hub.bicep' = {
  name: 'servicelog-hub'
  scope: rg
  params: {
    namespaceName: 'evhns-taskcounts-${resourceToken}'
    location: hubLocation
    tags: tags
    appPrincipalId: identity.outputs.principalId
  }
}

module batchDiagnostics 'app/batch-diagnostics.bicep' = if (manageBatchAccount) {
  name: 'batch-diagnostics-${resourceToken}'
  scope: resourceGroup(batchAccountResourceGroup)
  params: {
    settingName: batchDiagnosticSettingName
    batchAccountName: batchAccountName
    eventHubAuthorizationRuleId: serviceLogHub.outputs.authorizationRuleId
    eventHubName: serviceLogHub.outputs.hubName
  }
}

module batchAccess 'app/batch-access.bicep' = if (manageBatchAccount) {
  name: 'batch-access-${resourceToken}'
  scope: resourceGroup(batchAccountResourceGroup)
  params: {
    batchAccountName: batchAccountName
    principalId: identity.outputs.principalId
  }
}

// Looped over nothing when someone else runs the accounts (manageBatchAccount false): nothing is
// deployed into their groups. A setting is made only for an account in the hub's region.
module extraBatchDiagnostics 'app/batch-diagnostics.bicep' = [for (account, index) in (manageBatchAccount ? extraBatchAccounts : []): {
  name: 'batch-diagnostics-${resourceToken}-${index}'
  scope: resourceGroup(account.resourceGroup)
  params: {
    deploySetting: toLower(account.location) == toLower(hubLocation)
    settingName: batchDiagnosticSettingName
    batchAccountName: account.name
    eventHubAuthorizationRuleId: serviceLogHub.outputs.authorizationRuleId
    eventHubName: serviceLogHub.outputs.hubName
  }
}]

module extraBatchAccess 'app/batch-access.bicep' = [for (account, index) in (manageBatchAccount ? extraBatchAccounts : []): {
  name: 'batch-access-${resourceToken}-${index}'
  scope: resourceGroup(account.resourceGroup)
  params: {
    batchAccountName: account.name
    principalId: identity.outputs.principalId
  }
}]

// Granted before the app exists: the Flex publish writes the package with the app's identity, and a
// role assignment takes minutes to take effect.
module roles 'app/roles.bicep' = {
  name: 'roles'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    appPrincipalId: identity.outputs.principalId
  }
}

module app 'app/function.bicep' = {
  name: 'function-app'
  scope: rg
  dependsOn: [
    roles
  ]
  params: {
    name: 'func-taskcounts-${resourceToken}'
    planName: 'plan-taskcounts-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    tablePrefix: tablePrefix
    jobPartitions: jobPartitions
    jobPartitionRows: jobPartitionRows
    batchAccountUrl: 'https://${batchAccount.properties.accountEndpoint}'
    batchAccountName: batchAccountName
    batchAccountResourceId: batchAccount.id
    batchExtraAccounts: string(extraBatchAccountsSetting)
    validationMaxTasks: validationMaxTasks
    validationParallelListings: validationParallelListings
    validationSchedule: validationSchedule
    retentionDays: retentionDays
    taskSyncSchedule: taskSyncSchedule
    taskSyncMaxJobs: taskSyncMaxJobs
    taskSyncMaxPages: taskSyncMaxPages
    taskSyncOverlapSeconds: taskSyncOverlapSeconds
    progressSchedule: progressSchedule
    summarySchedule: summarySchedule
    progressWindowMinutes: progressWindowMinutes
    progressMaxPoints: progressMaxPoints
    stallMinutes: stallMinutes
    failureAlertPercent: failureAlertPercent
    countsMaxAgeMs: countsMaxAgeMs
    batchRequestsPerSecond: batchRequestsPerSecond
    watchMinutes: watchMinutes
    accessMode: accessMode
    readKeys: readKeys
    ingestKeys: ingestKeys
    operateKeys: operateKeys
    entraClientId: entraClientId
    entraTenantId: entraTenantId
    serviceLogNamespace: serviceLogHub.outputs.fullyQualifiedNamespace
    serviceLogHubName: serviceLogHub.outputs.hubName
    serviceLogConsumerGroup: serviceLogHub.outputs.consumerGroupName
    maximumInstanceCount: maximumInstanceCount
    durableAlwaysReady: durableAlwaysReady
    instanceMemoryMB: instanceMemoryMB
  }
}

module events 'app/events.bicep' = {
  name: 'events'
  scope: rg
  params: {
    topicName: 'evgt-taskcounts-${resourceToken}'
    location: location
    tags: tags
    eventSchema: eventSchema
    publisherPrincipalIds: publisherPrincipalIds
  }
}

module deadLetterAccess 'app/dead-letter-access.bicep' = {
  name: 'dead-letter-access'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    topicPrincipalId: events.outputs.topicPrincipalId
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.name
output FUNCTION_APP_URL string = 'https://${app.outputs.defaultHostName}'
output EVENT_GRID_TOPIC_NAME string = events.outputs.topicName
output EVENT_GRID_TOPIC_ENDPOINT string = events.outputs.topicEndpoint
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
output MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output SERVICE_LOG_EVENT_HUB_NAMESPACE string = serviceLogHub.outputs.fullyQualifiedNamespace
// Read by the postdeploy hook for infra/event-subscription.bicep (azd keeps outputs in the environment).
output EVENT_GRID_SCHEMA string = eventSchema
output EVENT_GRID_MAX_EVENTS_PER_BATCH int = maxEventsPerBatch
output EVENT_GRID_PREFERRED_BATCH_KB int = preferredBatchSizeInKilobytes
output EVENT_GRID_DEAD_LETTER_CONTAINER string = deadLetterContainerName
// Read by the postdeploy hook (the Batch owner's commands when manageBatchAccount is false) and predown.
output MANAGE_BATCH_ACCOUNT bool = manageBatchAccount
output BATCH_ACCOUNT_ID string = batchAccount.id
output BATCH_DIAGNOSTIC_SETTING_NAME string = batchDiagnosticSettingName
// Every account this environment put a setting or a role on, space-separated: the predown hook cleans each.
output BATCH_ACCOUNT_IDS string = join(concat([batchAccount.id], extraBatchAccountIds), ' ')
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output SERVICE_LOG_HUB_NAME string = serviceLogHub.outputs.hubName
output SERVICE_LOG_RULE_ID string = serviceLogHub.outputs.authorizationRuleId
output ACCESS_MODE string = accessMode
output ENTRA_CLIENT_ID string = entraClientId
output ENTRA_TENANT_ID string = entraTenantId
