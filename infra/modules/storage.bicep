// The storage account: the Functions host's own storage (keys, leases), the app's queues and
// containers, and the deployment package. Identity-only: shared keys are disabled, so no
// connection string with a key exists anywhere.

param location string
param storageAccountName string
param principalId string
param packageContainerName string
@description('Storage redundancy. The archive is the system of record, so the default keeps it across zone and region failures; GZRS needs a region with zones (Norway East has them).')
param skuName string = 'Standard_GZRS'
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
var containerNames = [
  'inbound'
  'add-subscriptions'
  'remove-subscriptions'
  'active-subscriptions'
  'aos-state'
  packageContainerName
]

var roles = {
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  //checkov:skip=CKV_AZURE_43:The name is computed in main.bicep as take('st<baseName><uniqueString>', 24) of lower-case letters and digits, which Checkov cannot evaluate.
  properties: {
    //checkov:skip=CKV_AZURE_59:Public endpoint needed without VNet integration (Flex/Elastic Premium); every request needs Entra ID (allowSharedKeyAccess false, no anonymous blob access). Use private endpoints to close it.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      //checkov:skip=CKV_AZURE_35:Flex/Elastic Premium without VNet integration reach storage over the public endpoint; access is Entra ID only (shared keys disabled). Add VNet integration + private endpoints to deny by default.
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        file: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    // The archive is the system of record: deleted blobs and containers stay recoverable.
    deleteRetentionPolicy: {
      enabled: true
      days: 30
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 30
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for name in containerNames: {
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
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for name in queueNames: {
    parent: queueService
    name: name
  }
]

// Data-plane roles only, on this account only: read/write blobs (archive, host keys and
// leases, the deployment package) and queue messages. No control-plane (key listing) rights.
resource blobRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, principalId, roles.storageBlobDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, principalId, roles.storageQueueDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
