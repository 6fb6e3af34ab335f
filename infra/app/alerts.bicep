// Azure Monitor log alerts on the app's own alert records: RecordProgress logs a warning once per
// episode ("stalled": tasks left and nothing completed for STALL_MINUTES; "failing": the recent
// failure ratio at or above FAILURE_ALERT_PERCENT), BatchServiceLogs one when its reader lags a day
// ("lagging") or meets another account's records ("otherAccount"), as TASKCOUNTS_ALERT {json} in the message text,
// which is what reaches Application Insights' traces table from the Python worker.
param applicationInsightsName string
param actionGroupName string
param location string
param tags object = {}
@description('E-mail addresses told of every stalled or failing job; empty: the rules fire with no one told.')
param alertEmails array = []
@description('How often the rules look (ISO 8601); each looks back over the same span.')
param evaluationFrequency string = 'PT5M'

var alertPrefix = 'TASKCOUNTS_ALERT '
var alertKinds = [
  {
    kind: 'stalled'
    severity: 2
    description: 'A job has tasks active or running and none completed for STALL_MINUTES.'
  }
  {
    kind: 'failing'
    severity: 1
    description: 'A job\'s recent failure ratio reached FAILURE_ALERT_PERCENT.'
  }
  {
    kind: 'lagging'
    severity: 1
    description: 'Batch\'s service log is read a day or more behind (storage down, the app failing): the hub keeps records 7 days, then they are lost.'
  }
  {
    kind: 'otherAccount'
    severity: 2
    description: 'Service-log records of a Batch account this deployment does not count reach its hub (a diagnostic setting pointed at it): they are ignored, never counted into this account\'s jobs.'
  }
]

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'taskcounts'
    enabled: true
    emailReceivers: [for (address, index) in alertEmails: {
      name: 'email-${index}'
      emailAddress: address
      useCommonAlertSchema: true
    }]
  }
}

resource jobAlerts 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [for alert in alertKinds: {
  name: 'taskcounts-job-${alert.kind}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'taskcounts: job ${alert.kind}'
    description: alert.description
    severity: alert.severity
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: evaluationFrequency
    windowSize: evaluationFrequency
    // A new Application Insights has no traces table yet: validating the query at creation would fail.
    skipQueryValidation: true
    criteria: {
      allOf: [
        {
          query: 'traces | where message startswith "${alertPrefix}" | extend record = parse_json(substring(message, ${length(alertPrefix)})) | where tostring(record.alert) == "${alert.kind}" | extend jobId = tostring(record.jobId), since = tostring(record.since)'
          timeAggregation: 'Count'
          dimensions: [
            {
              name: 'jobId'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}]

output actionGroupId string = actionGroup.id
