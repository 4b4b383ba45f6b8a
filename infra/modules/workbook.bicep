// An Azure Monitor workbook on the Application Insights component: the app's OpenTelemetry
// metrics (customMetrics rows named aos.*) and the function errors, one chart each.

param location string
param appInsightsId string
param displayName string = 'altinn-aos'
param tags object = {}

var charts = [
  {
    title: 'Instances archived, confirmed, failed (per hour)'
    query: 'customMetrics | where name in ("aos.instances.archived", "aos.instances.confirmed", "aos.instances.failed") | summarize count = sum(valueSum) by name, bin(timestamp, 1h)'
    visualization: 'timechart'
  }
  {
    title: 'Failures by kind (permanent or not)'
    query: 'customMetrics | where name == "aos.instances.failed" | extend kind = tostring(customDimensions.kind), permanent = tostring(customDimensions.permanent) | summarize failures = sum(valueSum) by kind, permanent | order by failures desc'
    visualization: 'table'
  }
  {
    title: 'Bytes archived (per hour)'
    query: 'customMetrics | where name == "aos.archive.bytes" | summarize bytes = sum(valueSum) by bin(timestamp, 1h)'
    visualization: 'timechart'
  }
  {
    title: 'Step duration, seconds (average and max by step)'
    query: 'customMetrics | where name == "aos.step.duration" | extend step = tostring(customDimensions.step) | summarize average = sum(valueSum) / sum(valueCount), maximum = max(valueMax) by step, bin(timestamp, 15m)'
    visualization: 'timechart'
  }
  {
    title: 'Queue depth'
    query: 'customMetrics | where name == "aos.queue.depth" | extend queue = tostring(customDimensions.queue) | summarize depth = max(valueMax) by queue, bin(timestamp, 15m)'
    visualization: 'timechart'
  }
  {
    title: 'Poison depth'
    query: 'customMetrics | where name == "aos.poison.depth" | extend queue = tostring(customDimensions.queue) | summarize depth = max(valueMax) by queue, bin(timestamp, 15m)'
    visualization: 'timechart'
  }
  {
    title: 'Certificate days left'
    query: 'customMetrics | where name == "aos.certificate.days_left" | summarize days_left = min(valueMin) by bin(timestamp, 1h)'
    visualization: 'timechart'
  }
  {
    title: 'Function errors (failed requests and exceptions)'
    query: 'union (requests | where success == false | extend kind = "failed request"), (exceptions | extend kind = "exception") | summarize errors = count() by kind, bin(timestamp, 15m)'
    visualization: 'timechart'
  }
]

var items = [
  for chart in charts: {
    type: 3
    content: {
      version: 'KqlItem/1.0'
      title: chart.title
      query: chart.query
      size: 0
      timeContext: {
        durationMs: 86400000
      }
      queryType: 0
      resourceType: 'microsoft.insights/components'
      visualization: chart.visualization
    }
  }
]

var header = {
  type: 1
  content: {
    json: '## altinn-aos\nMetrics the app sends through OpenTelemetry (customMetrics `aos.*`) and the function errors. Alerts: see the alert rules named aos-*.'
  }
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(appInsightsId, 'altinn-aos-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: appInsightsId
    version: 'Notebook/1.0'
    serializedData: string({
      version: 'Notebook/1.0'
      items: concat(array(header), items)
      fallbackResourceIds: [
        appInsightsId
      ]
    })
  }
}

output id string = workbook.id
