// The Event Grid subscription that delivers task events to TaskEvents: batched, retried for 24 h and
// dead-lettered to blob storage, so no event is lost silently. Deployed by azd's postdeploy hook
// (infra/hooks/postdeploy.*) after the code, because Event Grid sends the webhook its validation
// handshake when the subscription is created and only the deployed code answers it. Idempotent.
// The ingest key is read from the app's settings here, so it never travels on a command line.
targetScope = 'resourceGroup'

param topicName string
param functionAppName string
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
param storageAccountName string
param deadLetterContainerName string
@description('keys: the ingest key goes in a secret delivery header; entra: Event Grid sends an Entra ID token for the app registration.')
@allowed([
  'keys'
  'entra'
])
param accessMode string = 'keys'
param entraClientId string = ''
param entraTenantId string = tenant().tenantId

resource topic 'Microsoft.EventGrid/topics@2022-06-15' existing = {
  name: topicName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource subscription 'Microsoft.EventGrid/topics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: 'taskevents-webhook'
  properties: {
    eventDeliverySchema: eventSchema
    destination: {
      endpointType: 'WebHook'
      // No key in the URL: a URL is logged and recorded in telemetry, a secret delivery header is not.
      properties: {
        endpointUrl: 'https://${functionApp.properties.defaultHostName}/api/taskevents'
        maxEventsPerBatch: maxEventsPerBatch
        preferredBatchSizeInKilobytes: preferredBatchSizeInKilobytes
        deliveryAttributeMappings: accessMode == 'keys' ? [
          {
            name: 'x-functions-key'
            type: 'Static'
            properties: {
              value: first(split(list('${functionApp.id}/config/appsettings', '2023-12-01').properties.ACCESS_INGEST_KEYS, ','))
              isSecret: true
            }
          }
        ] : []
        azureActiveDirectoryTenantId: accessMode == 'entra' ? entraTenantId : null
        azureActiveDirectoryApplicationIdOrUri: accessMode == 'entra' ? 'api://${entraClientId}' : null
      }
    }
    filter: {
      includedEventTypes: [
        'Batch.TaskStateChanged'
        'Batch.TaskDeleted'
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storage.id
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}
