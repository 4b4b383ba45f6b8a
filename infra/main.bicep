// altinn-aos: everything the archive needs in one resource group — a Linux Function App
// running the `aos` custom handler (or `aos run` on Container Apps), its storage (queues,
// archive containers), Key Vault for the Maskinporten certificate, Application Insights on Log
// Analytics with alerts, a workbook and diagnostic settings, and a user-assigned identity that
// is the only principal with data access. Identity-based connections only.
//
//   azd up                                   (azure.yaml; parameters from main.parameters.json)
//   scripts/deploy                           (az CLI; see docs/deploy.md)
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.bicepparam
//
// Deploying needs rights to create role assignments (Owner, User Access Administrator or Role
// Based Access Control Administrator on the resource group): the template grants the identity
// its data roles.

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

@description('FlexConsumption (default, scale to zero; package: scripts/package --plan flex), ElasticPremium (always-warm instances; --plan premium) or ContainerApps (`aos run` in the image built from the Dockerfile).')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
  'ContainerApps'
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

// Reuse and naming (docs/deploy.md, docs/migration.md).
@description('Name of an existing storage account to use instead of creating one (e.g. the reference system\'s): its containers, queues and role assignments are added; its SKU, network rules and encryption stay.')
param existingStorageAccountName string = ''
@description('Name of an existing Key Vault (RBAC mode) to use instead of creating one: only role assignments are added.')
param existingKeyVaultName string = ''
@description('Name for a new Key Vault (3-24 characters); empty = kv-<baseName>-<uniqueString>. Choose another name when a deleted vault (purge protection: 90 days) still holds the default one.')
@maxLength(24)
param keyVaultName string = ''
@description('recover: bring back a soft-deleted vault of the same name (a deleted and re-created resource group) with its secrets, instead of failing on the taken name.')
@allowed([
  'default'
  'recover'
])
param keyVaultCreateMode string = 'default'
@description('Object id of the deployer (azd: AZURE_PRINCIPAL_ID): Key Vault Secrets Officer on the vault, Storage Blob Data Contributor on the package container. Empty = grant nothing.')
param deployerPrincipalId string = ''
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param deployerPrincipalType string = 'User'

// Archive protection (docs/deploy.md "Archive protection": what each costs and protects against).
@description('Blob versioning on the account: overwritten or deleted archive blobs keep their previous versions.')
param blobVersioning bool = true
@description('Days deleted blobs stay recoverable (account-wide blob soft delete); 0 = off.')
@minValue(0)
@maxValue(365)
param blobSoftDeleteDays int = 30
@description('Days deleted containers stay recoverable; 0 = off.')
@minValue(0)
@maxValue(365)
param containerSoftDeleteDays int = 30
@description('Version-level WORM on the archive container: days each blob version stays immutable; 0 = off. Compatible with re-archiving (a rewrite makes a new version). Lock the policy afterwards to make it irrevocable.')
@minValue(0)
@maxValue(146000)
param archiveImmutabilityDays int = 0
@description('Infrastructure (double) encryption of a new storage account; cannot be changed later.')
param infrastructureEncryption bool = true
@description('Days before the lifecycle rule deletes failure records (aos-state/failures/); 0 = keep them.')
@minValue(0)
@maxValue(3650)
param failureRecordRetentionDays int = 90
@description('Write the lifecycle management policy (on a reused account it replaces the account\'s existing policy: set false and add the rules yourself).')
param manageLifecyclePolicy bool = empty(existingStorageAccountName)

// Monitoring (docs/deploy.md "Monitoring").
@description('Resource id of an existing action group for the alerts; empty = create one for alertEmail.')
param existingActionGroupId string = ''
@description('Address the created action group mails; empty (and no existingActionGroupId) = alerts fire without notification.')
param alertEmail string = ''
@description('Alert when more instances than this fail in 15 minutes.')
@minValue(0)
param failureAlertThreshold int = 0
@description('Alert when the Maskinporten certificate expires within this many days.')
@minValue(1)
param certificateAlertDays int = 30

// Container Apps (hostingPlan ContainerApps).
@description('ContainerApps: the image built from the Dockerfile (e.g. myregistry.azurecr.io/altinn-aos:1.0.0).')
param containerImage string = ''
@description('ContainerApps: registry to pull containerImage from with the identity (give it AcrPull); empty = public image.')
param containerRegistryServer string = ''
@description('ContainerApps: the webhook secret (`?code=`); stored in Key Vault as aos-webhook-secret.')
@secure()
param webhookSecret string = ''

var suffix = uniqueString(resourceGroup().id, baseName)
var defaultKeyVaultName = take('kv-${toLower(baseName)}-${suffix}', 24)
var newKeyVaultName = empty(keyVaultName) ? defaultKeyVaultName : keyVaultName
var names = {
  identity: 'id-${baseName}-${suffix}'
  storage: empty(existingStorageAccountName) ? take('st${toLower(baseName)}${suffix}', 24) : existingStorageAccountName
  keyVault: empty(existingKeyVaultName) ? newKeyVaultName : existingKeyVaultName
  logs: 'log-${baseName}-${suffix}'
  appInsights: 'appi-${baseName}-${suffix}'
  plan: 'plan-${baseName}-${suffix}'
  functionApp: 'func-${baseName}-${suffix}'
  actionGroup: 'ag-${baseName}-${suffix}'
  containerEnvironment: 'cae-${baseName}-${suffix}'
  containerApp: take('ca-${toLower(baseName)}-${suffix}', 32)
  reconcileJob: take('caj-${toLower(baseName)}-reconcile-${suffix}', 32)
  catchUpJob: take('caj-${toLower(baseName)}-catchup-${suffix}', 32)
}
var containerApps = hostingPlan == 'ContainerApps'
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
    reuseExisting: !empty(existingStorageAccountName)
    principalId: identity.properties.principalId
    packageContainerName: packageContainerName
    infrastructureEncryption: infrastructureEncryption
    blobVersioning: blobVersioning
    blobSoftDeleteDays: blobSoftDeleteDays
    containerSoftDeleteDays: containerSoftDeleteDays
    archiveImmutabilityDays: archiveImmutabilityDays
    failureRecordRetentionDays: failureRecordRetentionDays
    manageLifecyclePolicy: manageLifecyclePolicy
    deployerPrincipalId: deployerPrincipalId
    deployerPrincipalType: deployerPrincipalType
    tags: tags
  }
}

module vault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    keyVaultName: names.keyVault
    reuseExisting: !empty(existingKeyVaultName)
    createMode: keyVaultCreateMode
    principalId: identity.properties.principalId
    deployerPrincipalId: deployerPrincipalId
    deployerPrincipalType: deployerPrincipalType
    tags: tags
  }
}

module diagnostics 'modules/diagnostics.bicep' = {
  name: 'diagnostics'
  params: {
    storageAccountName: storage.outputs.name
    keyVaultName: vault.outputs.name
    workspaceId: monitoring.outputs.logAnalyticsId
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    location: location
    appInsightsId: monitoring.outputs.appInsightsId
    existingActionGroupId: existingActionGroupId
    alertEmail: alertEmail
    actionGroupName: names.actionGroup
    failureThreshold: failureAlertThreshold
    certificateDays: certificateAlertDays
    tags: tags
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  params: {
    location: location
    appInsightsId: monitoring.outputs.appInsightsId
    displayName: 'altinn-aos (${baseName})'
    tags: tags
  }
}

// The product's settings (docs/configuration.md); names are the reference system's.
var appSettings = union({
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


module functionApp 'modules/functionapp.bicep' = if (!containerApps) {
  name: 'functionapp'
  params: {
    location: location
    functionAppName: names.functionApp
    planName: names.plan
    hostingPlan: hostingPlan == 'ElasticPremium' ? 'ElasticPremium' : 'FlexConsumption'
    premiumSku: premiumSku
    identityId: identity.id
    identityClientId: identity.properties.clientId
    storageAccountName: storage.outputs.name
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    packageContainerName: packageContainerName
    appInsightsConnectionString: monitoring.outputs.connectionString
    tags: tags
    appSettings: appSettings
  }
}

module containerApp 'modules/containerapps.bicep' = if (containerApps) {
  name: 'containerapps'
  dependsOn: [
    vault
  ]
  params: {
    location: location
    environmentName: names.containerEnvironment
    appName: names.containerApp
    reconcileJobName: names.reconcileJob
    catchUpJobName: names.catchUpJob
    image: containerImage
    registryServer: containerRegistryServer
    identityId: identity.id
    identityClientId: identity.properties.clientId
    logAnalyticsName: monitoring.outputs.logAnalyticsName
    storageAccountName: storage.outputs.name
    queueEndpoint: storage.outputs.queueEndpoint
    keyVaultName: vault.outputs.name
    webhookSecret: webhookSecret
    appSettings: union(appSettings, {
      APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
    })
    tags: tags
  }
}

@description('Subscribe this URL (plus ?code=<function key>, or ?code=<webhook secret> on Container Apps) in Altinn Events.')
output webhookUrlBase string = containerApps ? 'https://${containerApp.outputs.fqdn}/api/EventsReceiver' : 'https://${functionApp.outputs.defaultHostName}/api/EventsReceiver'
output hostingPlan string = hostingPlan
output functionAppName string = containerApps ? '' : functionApp.outputs.name
output containerAppName string = containerApps ? containerApp.outputs.name : ''
output resourceGroupName string = resourceGroup().name
output storageAccountName string = storage.outputs.name
output keyVaultName string = vault.outputs.name
output keyVaultUri string = vault.outputs.uri
output appInsightsName string = monitoring.outputs.appInsightsName
output identityClientId string = identity.properties.clientId
output packageContainerUrl string = '${storage.outputs.blobEndpoint}${packageContainerName}'
output blobEndpoint string = storage.outputs.blobEndpoint
output queueEndpoint string = storage.outputs.queueEndpoint
