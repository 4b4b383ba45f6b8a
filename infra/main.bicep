// altinn-aos: everything the archive needs in one resource group — a Linux Function App
// running the `aos` custom handler, its storage (queues, archive containers), Key Vault for
// the Maskinporten certificate, Application Insights on Log Analytics, and a user-assigned
// identity that is the only principal with data access. Identity-based connections only.
//
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.bicepparam

targetScope = 'resourceGroup'

@description('Short lower-case name used in every resource name (letters and digits).')
@minLength(2)
@maxLength(10)
param baseName string = 'aos'

param location string = resourceGroup().location

@description('Altinn environment: tt02 (test) or production.')
@allowed([
  'tt02'
  'production'
])
param altinnEnvironment string = 'tt02'

@description('The application owner org code, e.g. ttd.')
@minLength(2)
param org string

@description('The Maskinporten client id (integration) registered for the org.')
param maskinportenClientId string

@description('FlexConsumption (default, scale to zero) or ElasticPremium (always-warm instances).')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string = 'FlexConsumption'

@description('Elastic Premium size when hostingPlan is ElasticPremium.')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param premiumSku string = 'EP1'

@description('Comma-separated CloudEvent types to archive.')
param eventTypes string = 'app.instance.process.completed'

@description('Downstream hand-off queue: one message per confirmed instance with its manifest (docs/architecture.md "Downstream hand-off"). Empty = off.')
param archivedQueueName string = ''

@description('Days a permanent failure keeps reconciliation and catch-up from queueing its instance again (0 = no hold).')
@minValue(0)
@maxValue(365)
param permanentFailureHoldDays int = 7

param tags object = {
  system: 'altinn-aos'
}

var suffix = uniqueString(resourceGroup().id, baseName)
var names = {
  identity: 'id-${baseName}-${suffix}'
  storage: take('st${toLower(baseName)}${suffix}', 24)
  keyVault: take('kv-${toLower(baseName)}-${suffix}', 24)
  logs: 'log-${baseName}-${suffix}'
  appInsights: 'appi-${baseName}-${suffix}'
  plan: 'plan-${baseName}-${suffix}'
  functionApp: 'func-${baseName}-${suffix}'
}
var packageContainerName = 'app-package'

// Altinn and Maskinporten hosts per environment (Altinn docs: tt02 pairs with Maskinporten test).
var altinn = {
  tt02: {
    apps: 'https://${org}.apps.tt02.altinn.no/'
    platform: 'https://platform.tt02.altinn.no/'
    maskinporten: 'https://test.maskinporten.no/'
  }
  production: {
    apps: 'https://${org}.apps.altinn.no/'
    platform: 'https://platform.altinn.no/'
    maskinporten: 'https://maskinporten.no/'
  }
}
var hosts = altinn[altinnEnvironment]

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: names.identity
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    logAnalyticsName: names.logs
    appInsightsName: names.appInsights
    principalId: identity.properties.principalId
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    storageAccountName: names.storage
    principalId: identity.properties.principalId
    packageContainerName: packageContainerName
    tags: tags
  }
}

module vault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    keyVaultName: names.keyVault
    principalId: identity.properties.principalId
    tags: tags
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    location: location
    functionAppName: names.functionApp
    planName: names.plan
    hostingPlan: hostingPlan
    premiumSku: premiumSku
    identityId: identity.id
    identityClientId: identity.properties.clientId
    storageAccountName: storage.outputs.name
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    packageContainerName: packageContainerName
    appInsightsConnectionString: monitoring.outputs.connectionString
    tags: tags
    // The product's settings (docs/configuration.md); names are the reference system's.
    appSettings: union({
      AltinnApplicationOwnerSystemSettings__AppsBaseUrl: hosts.apps
      AltinnApplicationOwnerSystemSettings__PlatformBaseUrl: hosts.platform
      AltinnApplicationOwnerSystemSettings__Org: org
      AltinnApplicationOwnerSystemSettings__EventTypes: eventTypes
      AltinnApplicationOwnerSystemSettings__BlobEndpoint: storage.outputs.blobEndpoint
      AltinnApplicationOwnerSystemSettings__StorageContainer: 'inbound'
      AltinnApplicationOwnerSystemSettings__MaskinportenBaseAddress: hosts.maskinporten
      AltinnApplicationOwnerSystemSettings__MaskinPortenClientId: maskinportenClientId
      KeyVault__KeyVaultURI: vault.outputs.uri
      KeyVault__MaskinPortenCertSecretId: 'maskinportenclientcert'
      AltinnApplicationOwnerSystemSettings__PermanentFailureHoldDays: string(permanentFailureHoldDays)
    }, empty(archivedQueueName) ? {} : {
      QueueStorageSettings__ArchivedQueueName: archivedQueueName
    })
  }
}

@description('Subscribe this URL (plus ?code=<function key>) in Altinn Events.')
output webhookUrlBase string = 'https://${functionApp.outputs.defaultHostName}/api/EventsReceiver'
output functionAppName string = functionApp.outputs.name
output storageAccountName string = storage.outputs.name
output keyVaultName string = vault.outputs.name
output keyVaultUri string = vault.outputs.uri
output appInsightsName string = monitoring.outputs.appInsightsName
output identityClientId string = identity.properties.clientId
output packageContainerUrl string = '${storage.outputs.blobEndpoint}${packageContainerName}'
