// The Event Grid custom topic producers publish task events to. Its webhook subscription to
// TaskEvents is infra/event-subscription.bicep, deployed by azd's postdeploy hook: Event Grid
// validates a webhook when the subscription is created, so the code must be deployed first.
param topicName string
param location string
param tags object = {}
@allowed([
  'EventGridSchema'
  'CloudEventSchemaV1_0'
])
param eventSchema string
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
