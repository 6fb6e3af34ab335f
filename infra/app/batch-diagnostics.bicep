// The Batch account's service log streamed to the event hub: a diagnostic setting is a resource
// on the Batch account, so this module is deployed into the Batch account's resource group.
// ServiceLog only (not allLogs: AuditLog is billed for export and says nothing about tasks).
@description('Unique per environment (main.bicep): two environments on one account must not share a setting.')
param settingName string
@description('false: an account outside the hub\'s region, whose setting could not stream to it.')
param deploySetting bool = true
param batchAccountName string
param eventHubAuthorizationRuleId string
param eventHubName string

resource batchAccount 'Microsoft.Batch/batchAccounts@2024-07-01' existing = {
  name: batchAccountName
}

resource serviceLog 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (deploySetting) {
  name: settingName
  scope: batchAccount
  properties: {
    eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
    eventHubName: eventHubName
    logs: [
      {
        category: 'ServiceLog'
        enabled: true
      }
    ]
  }
}
