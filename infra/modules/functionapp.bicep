// The Linux Function App that runs `aos` as a custom handler, on Flex Consumption (default) or
// Elastic Premium. Every connection is identity-based (the user-assigned identity); no
// setting holds a key.

param location string
param functionAppName string
param planName string
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string
@description('Elastic Premium size (EP1-EP3); ignored on Flex Consumption.')
param premiumSku string = 'EP1'
@description('Flex Consumption: most instances to scale out to.')
param maximumInstanceCount int = 40
@description('Flex Consumption: memory per instance (MB): 512, 2048 or 4096.')
param instanceMemoryMB int = 2048
param identityId string
param identityClientId string
param storageAccountName string
param blobEndpoint string
param queueEndpoint string
param packageContainerName string
param appInsightsConnectionString string
param appSettings object
param tags object = {}
@description('azd finds the app to deploy to by this tag (azure.yaml service `aos`).')
param azdServiceName string = 'aos'

var flex = hostingPlan == 'FlexConsumption'
var packageContainerUrl = '${blobEndpoint}${packageContainerName}'

// Settings every plan needs. The host's own storage (`AzureWebJobsStorage`) and the queue
// bindings' connection (`QueueStorageSettings:ConnectionString`, the reference system's name)
// are identity-based connections: `__credential` + `__clientId` select the user-assigned identity.
var common = union(appSettings, {
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  QueueStorageSettings__ConnectionString__queueServiceUri: queueEndpoint
  // The blob triggers (EventsSubscriber/EventsDeSubscriber) on the same connection watch this
  // account's blob service, and `aos` keeps the subscription containers there.
  QueueStorageSettings__ConnectionString__blobServiceUri: blobEndpoint
  QueueStorageSettings__ConnectionString__credential: 'managedidentity'
  QueueStorageSettings__ConnectionString__clientId: identityClientId
  // The identity `aos` uses for blobs and Key Vault (Azure SDK convention).
  AZURE_CLIENT_ID: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
})

// Flex Consumption takes the runtime from functionAppConfig and must not have
// FUNCTIONS_WORKER_RUNTIME/FUNCTIONS_EXTENSION_VERSION. Elastic Premium on Linux runs the zip
// from blob storage, read with the identity: no Azure Files content share (which would need
// a storage key).
var premiumOnly = {
  FUNCTIONS_WORKER_RUNTIME: 'custom'
  FUNCTIONS_EXTENSION_VERSION: '~4'
  WEBSITE_RUN_FROM_PACKAGE: '${packageContainerUrl}/altinn-aos.zip'
  WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID: identityId
}
// Flex Consumption supports the blob trigger only with `source: "EventGrid"`, not the polling
// trigger the subscription functions use (the reference system's, and the one `func start`
// runs locally): `scripts/package --plan flex` leaves those functions out of the package
// (disabling them by setting is not enough, the host refuses them when indexing); manage
// subscriptions with `aos subscriptions` there.
var settings = flex ? common : union(common, premiumOnly)

var flexSku = {
  name: 'FC1'
  tier: 'FlexConsumption'
}
var elasticPremiumSku = {
  name: premiumSku
  tier: 'ElasticPremium'
}

// Flex Consumption: the `custom` runtime stack, and the package in a blob container read with
// the identity (what `az functionapp deployment source config-zip` uploads to).
var flexConfig = {
  deployment: {
    storage: {
      type: 'blobContainer'
      value: packageContainerUrl
      authentication: {
        type: 'UserAssignedIdentity'
        userAssignedIdentityResourceId: identityId
      }
    }
  }
  scaleAndConcurrency: {
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
  runtime: {
    name: 'custom'
    version: '1.0'
  }
}

var appSettingsArray = [
  for item in items(settings): {
    name: item.key
    value: item.value
  }
]

// Flex Consumption (FC1) refuses many siteConfig properties with error 51021 ("… for Flex
// Consumption sites is invalid"): alwaysOn, http20Enabled, cors, scmMinTlsVersion, ftpsState,
// linuxFxVersion, use32BitWorkerProcess, preWarmedInstanceCount, netFrameworkVersion,
// functionsRuntimeScaleMonitoringEnabled among them. Only what Microsoft's own Flex templates
// set goes there; FTP is off anyway (basic publishing credentials are disabled below, and Flex
// has no FTP endpoint).
var flexSiteConfig = {
  minTlsVersion: '1.2'
  appSettings: appSettingsArray
}
var premiumSiteConfig = {
  minTlsVersion: '1.2'
  scmMinTlsVersion: '1.2'
  ftpsState: 'Disabled'
  http20Enabled: true
  alwaysOn: false
  remoteDebuggingEnabled: false
  cors: {
    allowedOrigins: []
  }
  appSettings: appSettingsArray
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: flex ? 'functionapp' : 'elastic'
  sku: flex ? flexSku : elasticPremiumSku
  //checkov:skip=CKV_AZURE_225:Zone redundancy needs at least 3 always-on instances (cost); a zone outage only delays work, since the events wait in zone/geo-redundant queues.
  properties: {
    reserved: true // Linux
    maximumElasticWorkerCount: flex ? null : 20
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: union(tags, {
    'azd-service-name': azdServiceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    //checkov:skip=CKV_AZURE_56:App Service Authentication does not fit a webhook called by Altinn Events; the function key (?code=) authenticates it, as Altinn's subscription API expects.
    //checkov:skip=CKV_AZURE_17:Client certificates cannot be presented by Altinn Events when it calls the webhook.
    //checkov:skip=CKV_AZURE_212:Queue-driven work needs no standby instance: Flex scales from zero and messages wait in the queue until an instance takes them.
    //checkov:skip=CKV_AZURE_213:App Service health check is not offered on Flex Consumption (instances scale to zero); GET /api/health (the Health function) answers probes and the alerts in monitoring.bicep watch failures.
    //checkov:skip=CKV_AZURE_67:siteConfig is a per-plan ternary Checkov cannot evaluate: Elastic Premium sets http20Enabled true; Flex Consumption refuses http20Enabled (error 51021).
    //checkov:skip=CKV_AZURE_18:siteConfig is a per-plan ternary Checkov cannot evaluate: Elastic Premium sets http20Enabled true; Flex Consumption refuses http20Enabled (error 51021).
    //checkov:skip=CKV_AZURE_15:siteConfig is a per-plan ternary Checkov cannot evaluate: both branches set minTlsVersion '1.2' (flexSiteConfig, premiumSiteConfig).
    //checkov:skip=CKV_AZURE_78:siteConfig is a per-plan ternary Checkov cannot evaluate: Elastic Premium sets ftpsState Disabled; Flex Consumption refuses ftpsState (error 51021) and has no FTP endpoint; basic publishing credentials (ftp, scm) are disabled below for both.
    //checkov:skip=CKV_AZURE_222:Altinn Events calls the webhook from the internet; public network access is required.
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId
    functionAppConfig: flex ? flexConfig : null
    siteConfig: flex ? flexSiteConfig : premiumSiteConfig
  }
}

// Basic-auth publishing (FTP, SCM with a username/password) off: deploy with Entra ID.
resource ftp 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scm 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = app.name
output defaultHostName string = app.properties.defaultHostName
