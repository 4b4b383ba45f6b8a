// Alerts on what the app reports to Application Insights (OpenTelemetry metrics arrive as
// `customMetrics` rows; Functions invocations as `requests`, failures as `exceptions`), sent to
// an action group: an existing one, or one created here that mails alertEmail.
//
//   aos.poison.depth (customDimensions.queue)   poison messages waiting          > 0
//   aos.instances.failed (kind, permanent)      failed instances per 15 minutes  > failureThreshold
//   aos.certificate.days_left                   Maskinporten certificate         < certificateDays
//   requests (success false) + exceptions       function errors per 15 minutes   > functionErrorThreshold

param location string
param appInsightsId string
@description('Resource id of an existing action group; empty = create one for alertEmail.')
param existingActionGroupId string = ''
@description('Address the created action group mails; empty with no existingActionGroupId = alerts without notification (visible in the portal).')
param alertEmail string = ''
param actionGroupName string
@minValue(0)
param failureThreshold int = 0
@minValue(1)
param certificateDays int = 30
@minValue(0)
param functionErrorThreshold int = 0
param tags object = {}

var createGroup = empty(existingActionGroupId) && !empty(alertEmail)
var actionGroupIds = !empty(existingActionGroupId) ? array(existingActionGroupId) : createGroup ? array(actionGroup.id) : []

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (createGroup) {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'aos-alerts'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var rules = [
  {
    name: 'aos-poison-not-empty'
    description: 'Messages wait in a poison queue (aos.poison.depth > 0): see `aos poison list`, fix the cause, `aos poison replay`.'
    severity: 2
    query: 'customMetrics | where name == "aos.poison.depth" | extend queue = tostring(customDimensions.queue) | summarize depth = max(valueMax) by queue'
    measure: 'depth'
    aggregation: 'Maximum'
    dimensions: [
      {
        name: 'queue'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
    operator: 'GreaterThan'
    threshold: 0
  }
  {
    name: 'aos-instances-failing'
    description: 'Instances failed in the last 15 minutes (aos.instances.failed, by kind and permanent): see `aos-state/failures/` or `aos status`.'
    severity: 2
    query: 'customMetrics | where name == "aos.instances.failed" | extend kind = tostring(customDimensions.kind), permanent = tostring(customDimensions.permanent) | summarize failures = sum(valueSum) by kind, permanent'
    measure: 'failures'
    aggregation: 'Total'
    dimensions: [
      {
        name: 'kind'
        operator: 'Include'
        values: [
          '*'
        ]
      }
      {
        name: 'permanent'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
    operator: 'GreaterThan'
    threshold: failureThreshold
  }
  {
    name: 'aos-certificate-expiring'
    description: 'The Maskinporten certificate expires within ${certificateDays} days (aos.certificate.days_left): renew it and write the new one to Key Vault (secret maskinportenclientcert).'
    severity: 1
    query: 'customMetrics | where name == "aos.certificate.days_left" | summarize days_left = min(valueMin)'
    measure: 'days_left'
    aggregation: 'Minimum'
    dimensions: []
    operator: 'LessThan'
    threshold: certificateDays
  }
  {
    name: 'aos-function-errors'
    description: 'Function invocations failed or threw in the last 15 minutes (requests with success false, exceptions).'
    severity: 2
    query: 'union (requests | where success == false | project timestamp), (exceptions | project timestamp) | summarize errors = count()'
    measure: 'errors'
    aggregation: 'Total'
    dimensions: []
    operator: 'GreaterThan'
    threshold: functionErrorThreshold
  }
]

resource alerts 'Microsoft.Insights/scheduledQueryRules@2021-08-01' = [
  for rule in rules: {
    name: rule.name
    location: location
    tags: tags
    properties: {
      displayName: rule.name
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        appInsightsId
      ]
      evaluationFrequency: 'PT5M'
      windowSize: 'PT15M'
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: rule.aggregation
            metricMeasureColumn: rule.measure
            dimensions: rule.dimensions
            operator: rule.operator
            threshold: rule.threshold
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      autoMitigate: true
      actions: {
        actionGroups: actionGroupIds
      }
    }
  }
]

output actionGroupIds array = actionGroupIds
