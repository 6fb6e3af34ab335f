// The event hub that carries the Batch account's service log to the app. It must be in the Batch
// account's region (a diagnostic setting can only stream to a hub there). Azure Monitor writes
// with the authorization rule; the app reads with its managed identity through its own consumer
// group, so other readers of the same stream are not disturbed.
param namespaceName string
param location string
param tags object = {}
param hubName string = 'batch-service-log'
param consumerGroupName string = 'taskcounts'
param partitionCount int = 4
// The Event Hubs trigger retries a failing batch forever and holds its checkpoint there, so a storage
// outage longer than the retention would lose records for good: keep them as long as Standard allows.
@minValue(2)  // the lagging alert fires a day behind: a day must be left to act on it
@maxValue(7)
param messageRetentionInDays int = 7
param appPrincipalId string

var eventHubsDataReceiver = 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  tags: tags
  // Standard: consumer groups beyond $Default.
  sku: { name: 'Standard', tier: 'Standard', capacity: 1 }
  properties: {
    minimumTlsVersion: '1.2'
    // Local (SAS) auth stays on: Azure Monitor's diagnostic setting writes with the rule below.
    // The app never uses a key: it reads with its identity (Azure Event Hubs Data Receiver).
    disableLocalAuth: false
  }
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: hubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: messageRetentionInDays
  }
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: hub
  name: consumerGroupName
}

// What a diagnostic setting needs: a namespace rule with Manage, Send and Listen.
resource diagnosticsRule 'Microsoft.EventHub/namespaces/authorizationRules@2024-01-01' = {
  parent: namespace
  name: 'azure-monitor-diagnostics'
  properties: {
    rights: [ 'Manage', 'Send', 'Listen' ]
  }
}

resource appReads 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hub.id, appPrincipalId, eventHubsDataReceiver)
  scope: hub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataReceiver)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output hubName string = hub.name
output consumerGroupName string = consumerGroup.name
output authorizationRuleId string = diagnosticsRule.id
