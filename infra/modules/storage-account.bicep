// A new storage account for altinn-aos (storage.bicep deploys it unless an existing one is
// reused). Identity-only: shared keys disabled, HTTPS and TLS 1.2 only, no anonymous access.

param location string
param storageAccountName string
param skuName string = 'Standard_GZRS'
param infrastructureEncryption bool = true
param tags object = {}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
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
      requireInfrastructureEncryption: infrastructureEncryption
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

output name string = account.name
