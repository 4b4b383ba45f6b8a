// The storage account: the Functions host's own storage (keys, leases), the app's queues and
// containers, and the deployment package. Identity-only: shared keys are disabled, so no
// connection string with a key exists anywhere.
//
// A new account is created, or an existing one is reused (`reuseExisting`, the migration
// path): then only the containers, queues, role assignments and blob-service data protection
// are applied to it; its SKU, network rules and encryption stay as they are.

param location string
param storageAccountName string
@description('Reuse the existing account named storageAccountName instead of creating it.')
param reuseExisting bool = false
param principalId string
param packageContainerName string
@description('The archive container (AltinnApplicationOwnerSystemSettings__StorageContainer).')
param archiveContainerName string = 'inbound'
@description('Storage redundancy. The archive is the system of record, so the default keeps it across zone and region failures; GZRS needs a region with zones (Norway East has them).')
param skuName string = 'Standard_GZRS'
@description('Second layer of AES-256 encryption at the storage infrastructure level (only when the account is created).')
param infrastructureEncryption bool = true
@description('Blob versioning: every overwrite or delete keeps the previous version (needed by archiveImmutabilityDays).')
param blobVersioning bool = true
@description('Days deleted blobs (and, with versioning, deleted versions) stay recoverable; 0 = off.')
@minValue(0)
@maxValue(365)
param blobSoftDeleteDays int = 30
@description('Days deleted containers stay recoverable; 0 = off.')
@minValue(0)
@maxValue(365)
param containerSoftDeleteDays int = 30
@description('Version-level WORM on the archive container: each blob version is immutable for this many days after it is written (0 = off). Needs blobVersioning.')
@minValue(0)
@maxValue(146000)
param archiveImmutabilityDays int = 0
@description('Days after its last change a failure record under aos-state/failures/ is deleted by the lifecycle rule; 0 = keep.')
@minValue(0)
@maxValue(3650)
param failureRecordRetentionDays int = 90
@description('Write the lifecycle management policy of the account (one per account: on a reused account it replaces the existing policy).')
param manageLifecyclePolicy bool = true
@description('Object id of the deployer: gets Storage Blob Data Contributor on the package container only (to upload the Elastic Premium package); empty = none.')
param deployerPrincipalId string = ''
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param deployerPrincipalType string = 'User'
param tags object = {}

// Fixed contracts (design §2.1): queue and container names as the reference system has them.
var queueNames = [
  'events-inbound'
  'events-feedback'
  'events-confirmation'
  // Created up front so `aos poison list` works before the first failure.
  'events-inbound-poison'
  'events-feedback-poison'
  'events-confirmation-poison'
]
var otherContainerNames = [
  'add-subscriptions'
  'remove-subscriptions'
  'active-subscriptions'
  'aos-state'
  packageContainerName
]
var worm = archiveImmutabilityDays > 0
var versionLevelImmutability = {
  enabled: true
}

var roles = {
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
}

module created 'storage-account.bicep' = if (!reuseExisting) {
  name: 'storage-account'
  params: {
    location: location
    storageAccountName: storageAccountName
    skuName: skuName
    infrastructureEncryption: infrastructureEncryption
    tags: tags
  }
}

// The account either way (created above, or reused); children depend on `created` explicitly.
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  dependsOn: [
    created
  ]
  properties: {
    // The archive is the system of record: overwritten and deleted blobs stay recoverable.
    // (Soft delete and versioning are account-wide settings of the blob service.)
    isVersioningEnabled: blobVersioning || worm
    deleteRetentionPolicy: {
      enabled: blobSoftDeleteDays > 0
      days: blobSoftDeleteDays > 0 ? blobSoftDeleteDays : null
    }
    containerDeleteRetentionPolicy: {
      enabled: containerSoftDeleteDays > 0
      days: containerSoftDeleteDays > 0 ? containerSoftDeleteDays : null
    }
  }
}

// The archive container. With WORM on, version-level immutability: a re-archive (which
// overwrites elements and the manifest in place) creates new versions, and every version stays
// unchangeable and undeletable for archiveImmutabilityDays. Container-level WORM would refuse
// every overwrite, so re-archiving and even a retried archive step would fail.
resource archive 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: archiveContainerName
  properties: {
    publicAccess: 'None'
    immutableStorageWithVersioning: worm ? versionLevelImmutability : null
  }
}

// The container's default time-based retention policy (unlocked: lock it with
// `az storage container immutability-policy lock` once it is right; a locked policy can only
// be extended).
resource archiveRetention 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = if (worm) {
  parent: archive
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: archiveImmutabilityDays
    allowProtectedAppendWrites: false
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for name in otherContainerNames: {
    parent: blobService
    name: name
    properties: {
      publicAccess: 'None'
    }
  }
]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
  dependsOn: [
    created
  ]
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for name in queueNames: {
    parent: queueService
    name: name
  }
]

// Failure records (aos-state/failures/…) are diagnostics, not archive data: they go after
// failureRecordRetentionDays. With versioning on, the versions the host's and the app's state
// blobs leave behind (leases, cursors, holds: rewritten often) go after 7 days. Nothing in the
// archive container is touched.
var failureRuleBody = {
  enabled: true
  name: 'delete-old-failure-records'
  type: 'Lifecycle'
  definition: {
    filters: {
      blobTypes: [
        'blockBlob'
      ]
      prefixMatch: [
        'aos-state/failures/'
      ]
    }
    actions: {
      baseBlob: {
        delete: {
          daysAfterModificationGreaterThan: failureRecordRetentionDays
        }
      }
    }
  }
}
var failureRule = failureRecordRetentionDays > 0 ? array(failureRuleBody) : []
var stateVersionRuleBody = {
  enabled: true
  name: 'delete-old-state-versions'
  type: 'Lifecycle'
  definition: {
    filters: {
      blobTypes: [
        'blockBlob'
      ]
      prefixMatch: [
        'aos-state/'
        'azure-webjobs-hosts/'
        'azure-webjobs-secrets/'
        '${packageContainerName}/'
      ]
    }
    actions: {
      version: {
        delete: {
          daysAfterCreationGreaterThan: 7
        }
      }
    }
  }
}
var stateVersionRule = blobVersioning || worm ? array(stateVersionRuleBody) : []
var lifecycleRules = concat(failureRule, stateVersionRule)

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (manageLifecyclePolicy && !empty(lifecycleRules)) {
  parent: storage
  name: 'default'
  dependsOn: [
    created
  ]
  properties: {
    policy: {
      rules: lifecycleRules
    }
  }
}

// Data-plane roles only, on this account only: read/write blobs (archive, host keys and
// leases, the deployment package) and queue messages. No control-plane (key listing) rights.
resource blobRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, principalId, roles.storageBlobDataContributor)
  dependsOn: [
    created
  ]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, principalId, roles.storageQueueDataContributor)
  dependsOn: [
    created
  ]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The package container is the last of otherContainerNames.
resource deployerPackageRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  scope: containers[length(otherContainerNames) - 1]
  name: guid(storage.id, packageContainerName, deployerPrincipalId, roles.storageBlobDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
  }
}

// Endpoints from the name (public cloud suffix of this environment), so nothing reads the
// account's properties before a created account exists.
output name string = storageAccountName
output id string = storage.id
output blobEndpoint string = 'https://${storageAccountName}.blob.${environment().suffixes.storage}/'
output queueEndpoint string = 'https://${storageAccountName}.queue.${environment().suffixes.storage}/'
output blobServiceId string = blobService.id
output queueServiceId string = queueService.id
