// The Event Grid custom topic producers publish task events to, and (second step, once the
// code answers the validation handshake) its webhook subscription to TaskEvents, batched,
// retried, and dead-lettered to blob storage so that no event is lost silently.
param topicName string
param location string
param tags object = {}
@allowed([
  'EventGridSchema'
  'CloudEventSchemaV1_0'
])
param eventSchema string
param deployEventSubscription bool
param functionAppName string
param maxEventsPerBatch int
param preferredBatchSizeInKilobytes int
param storageAccountId string
param deadLetterContainerName string
@description('Principals (producers) allowed to publish with Microsoft Entra ID: EventGrid Data Sender.')
param publisherPrincipalIds array

var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'

resource topic 'Microsoft.EventGrid/topics@2022-06-15' = {
  // checkov:skip=CKV_AZURE_193: producers (job managers, service-log relays) publish from wherever they run; every publish is authenticated with Entra ID (local auth is off). Add a private endpoint if your producers are all in one network.
  name: topicName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: eventSchema
    publicNetworkAccess: 'Enabled'
    disableLocalAuth: true // producers publish with Microsoft Entra ID (EventGrid Data Sender), never with topic keys
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource subscription 'Microsoft.EventGrid/topics/eventSubscriptions@2022-06-15' = if (deployEventSubscription) {
  parent: topic
  name: 'taskevents-webhook'
  properties: {
    eventDeliverySchema: eventSchema
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionApp.properties.defaultHostName}/api/taskevents?code=${listKeys('${functionApp.id}/host/default', '2023-12-01').functionKeys.default}'
        maxEventsPerBatch: maxEventsPerBatch
        preferredBatchSizeInKilobytes: preferredBatchSizeInKilobytes
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
          resourceId: storageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

resource senders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in publisherPrincipalIds: {
  name: guid(topic.id, principalId, eventGridDataSender)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
    principalId: principalId
  }
}]

output topicId string = topic.id
output topicName string = topic.name
output topicEndpoint string = topic.properties.endpoint
output topicPrincipalId string = topic.identity.principalId
