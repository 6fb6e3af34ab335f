// Read access to an existing Batch account, deployed into the Batch account's resource group
// (which may differ from the app's). Azure Batch Account Reader can list jobs and tasks.
param batchAccountName string
param principalId string

var batchAccountReader = '11076f67-66f6-4be0-8f6b-f0609fd05cc9'

resource batchAccount 'Microsoft.Batch/batchAccounts@2024-07-01' existing = {
  name: batchAccountName
}

resource reader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(batchAccount.id, principalId, batchAccountReader)
  scope: batchAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', batchAccountReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

