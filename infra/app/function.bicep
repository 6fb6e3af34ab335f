// The Function App on the Flex Consumption plan (Linux, Python 3.11) with its app settings.
// Every setting shared/config.py reads is here under the same name (a test checks the set).
param name string
param planName string
param location string
param tags object = {}
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsConnectionString string
param tablePrefix string
param jobPartitions int
param jobPartitionRows int
param batchAccountUrl string
param batchAccountName string
@description('The Batch account\'s ARM id: only its service-log records are counted.')
param batchAccountResourceId string
@description('Further accounts counted, as the app reads them (BATCH_EXTRA_ACCOUNTS): JSON [{name, url, resourceId}].')
param batchExtraAccounts string = '[]'
param validationMaxTasks int
param validationParallelListings int
param validationSchedule string
param retentionDays int
param taskSyncSchedule string
param taskSyncMaxJobs int
param taskSyncMaxPages int
param taskSyncOverlapSeconds int
param progressSchedule string
param summarySchedule string
param progressWindowMinutes int
param progressMaxPoints int
param stallMinutes int
param failureAlertPercent int
param countsMaxAgeMs int
param batchRequestsPerSecond int
param watchMinutes int
@allowed([
  'keys'
  'entra'
])
param accessMode string
@secure()
param readKeys string
@secure()
param ingestKeys string
@secure()
param operateKeys string
param entraClientId string
param entraTenantId string
param serviceLogNamespace string
param serviceLogHubName string
param serviceLogConsumerGroup string
param maximumInstanceCount int
param durableAlwaysReady int
param instanceMemoryMB int

var storageSuffix = environment().suffixes.storage

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption scales instances on demand across the region; zone redundancy is a per-region option to enable where offered
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Event Grid delivers to the webhook and dashboards read counts over the public endpoint; every API route checks its kind of access (docs/access.md)
  // checkov:skip=CKV_AZURE_17: callers authenticate with access keys or Entra ID tokens; Event Grid webhooks cannot present client certificates
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero on demand; set always-ready instances if cold starts matter to you
  // checkov:skip=CKV_AZURE_213: Flex Consumption apps have no App Service health-check path; the platform manages instance health
  // checkov:skip=CKV_AZURE_78: Flex Consumption has no FTP(S) endpoint, and a Flex site that sets ftpsState is refused (ExtendedCode 51021)
  // checkov:skip=CKV_AZURE_18: http20Enabled is not confirmed as accepted on a Flex Consumption site; left out so deployment cannot be refused for it
  // checkov:skip=CKV_AZURE_67: the same check as CKV_AZURE_18 for function apps
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: 'https://${storageAccountName}.blob.${storageSuffix}/${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        // Durable Functions on Flex: Microsoft recommends an always-ready instance for the "durable"
        // group, so orchestrations are not left waiting for a scale-from-zero; 0 saves its cost.
        alwaysReady: durableAlwaysReady > 0 ? [
          {
            name: 'durable'
            instanceCount: durableAlwaysReady
          }
        ] : []
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    // Only what Flex Consumption accepts: ftpsState, alwaysOn, linuxFxVersion, functionAppScaleLimit and the
    // other properties in Microsoft's "Flex Consumption plan deprecations" table are refused (tests/infra/test_bicep.py).
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: [
        // The host's storage, reached with the managed identity (no account key anywhere).
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: 'https://${storageAccountName}.blob.${storageSuffix}'
        }
        {
          name: 'AzureWebJobsStorage__queueServiceUri'
          value: 'https://${storageAccountName}.queue.${storageSuffix}'
        }
        {
          name: 'AzureWebJobsStorage__tableServiceUri'
          value: 'https://${storageAccountName}.table.${storageSuffix}'
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: applicationInsightsConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
        // What taskcounts itself reads (shared/config.py).
        {
          name: 'COUNTS_TABLE_PREFIX'
          value: tablePrefix
        }
        {
          name: 'JOB_PARTITIONS'
          value: string(jobPartitions)
        }
        {
          name: 'JOB_PARTITION_ROWS'
          value: string(jobPartitionRows)
        }
        {
          name: 'BATCH_ACCOUNT_URL'
          value: batchAccountUrl
        }
        {
          name: 'BATCH_ACCOUNT_NAME'
          value: batchAccountName
        }
        {
          name: 'BATCH_ACCOUNT_RESOURCE_ID'
          value: batchAccountResourceId
        }
        {
          name: 'BATCH_EXTRA_ACCOUNTS'
          value: batchExtraAccounts
        }
        {
          name: 'VALIDATION_MAX_TASKS'
          value: string(validationMaxTasks)
        }
        {
          name: 'VALIDATION_PARALLEL_LISTINGS'
          value: string(validationParallelListings)
        }
        {
          name: 'VALIDATION_SCHEDULE'
          value: validationSchedule
        }
        {
          name: 'RETENTION_DAYS'
          value: string(retentionDays)
        }
        {
          name: 'TASK_SYNC_SCHEDULE'
          value: taskSyncSchedule
        }
        {
          name: 'TASK_SYNC_MAX_JOBS'
          value: string(taskSyncMaxJobs)
        }
        {
          name: 'TASK_SYNC_MAX_PAGES'
          value: string(taskSyncMaxPages)
        }
        {
          name: 'TASK_SYNC_OVERLAP_SECONDS'
          value: string(taskSyncOverlapSeconds)
        }
        {
          name: 'PROGRESS_SCHEDULE'
          value: progressSchedule
        }
        {
          name: 'SUMMARY_SCHEDULE'
          value: summarySchedule
        }
        {
          name: 'PROGRESS_WINDOW_MINUTES'
          value: string(progressWindowMinutes)
        }
        {
          name: 'PROGRESS_MAX_POINTS'
          value: string(progressMaxPoints)
        }
        {
          name: 'STALL_MINUTES'
          value: string(stallMinutes)
        }
        {
          name: 'FAILURE_ALERT_PERCENT'
          value: string(failureAlertPercent)
        }
        {
          name: 'COUNTS_MAX_AGE_MS'
          value: string(countsMaxAgeMs)
        }
        {
          name: 'BATCH_REQUESTS_PER_SECOND'
          value: string(batchRequestsPerSecond)
        }
        {
          name: 'WATCH_MINUTES'
          value: string(watchMinutes)
        }
        {
          name: 'ACCESS_MODE'
          value: accessMode
        }
        {
          name: 'ACCESS_READ_KEYS'
          value: accessMode == 'keys' ? readKeys : ''
        }
        {
          name: 'ACCESS_INGEST_KEYS'
          value: accessMode == 'keys' ? ingestKeys : ''
        }
        {
          name: 'ACCESS_OPERATE_KEYS'
          value: accessMode == 'keys' ? operateKeys : ''
        }
        {
          name: 'BATCH_LOG_HUB'
          value: serviceLogHubName
        }
        {
          name: 'BATCH_LOG_CONSUMER_GROUP'
          value: serviceLogConsumerGroup
        }
        {
          // BatchServiceLogs' connection "BATCH_LOG", identity-based: no key in the app
          name: 'BATCH_LOG__fullyQualifiedNamespace'
          value: serviceLogNamespace
        }
        {
          name: 'BATCH_LOG__credential'
          value: 'managedidentity'
        }
        {
          name: 'BATCH_LOG__clientId'
          value: identityClientId
        }
      ]
    }
  }
}

// entra mode: App Service Authentication validates every caller's Entra ID token (401 without one) and
// passes its claims to the app, which checks the route's app role. The dashboard's files and the
// OpenAPI document stay reachable, so the page can offer to sign in.
resource authentication 'Microsoft.Web/sites/config@2024-04-01' = if (accessMode == 'entra') {
  // checkov:skip=CKV_AZURE_13: checkov reads this authsettingsV2 child as a whole site; the site's settings and findings are functionApp's
  // checkov:skip=CKV_AZURE_63: checkov reads this authsettingsV2 child as a whole site; the site's settings and findings are functionApp's
  // checkov:skip=CKV_AZURE_65: checkov reads this authsettingsV2 child as a whole site; the site's settings and findings are functionApp's
  // checkov:skip=CKV_AZURE_66: checkov reads this authsettingsV2 child as a whole site; the site's settings and findings are functionApp's
  // checkov:skip=CKV_AZURE_80: checkov reads this authsettingsV2 child as a whole site; the site's settings and findings are functionApp's
  // checkov:skip=CKV_AZURE_88: checkov reads this authsettingsV2 child as a whole site; the site's settings and findings are functionApp's
  // checkov:skip=CKV_AZURE_222: checkov reads this authsettingsV2 child as a whole site; the site's settings and findings are functionApp's
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/api/dashboard'
        '/api/dashboard/'
        '/api/dashboard/index.html'
        '/api/dashboard/app.js'
        '/api/dashboard/style.css'
        '/api/openapi.json'
      ]
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: entraClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${entraTenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${entraClientId}'
            entraClientId
          ]
        }
      }
    }
  }
}

output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
