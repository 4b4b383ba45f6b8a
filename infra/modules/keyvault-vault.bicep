// A new Key Vault for altinn-aos (keyvault.bicep deploys it unless an existing one is
// reused): RBAC mode, soft delete with purge protection.

param location string
param keyVaultName string
@allowed([
  'default'
  'recover'
])
param createMode string = 'default'
param tags object = {}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    createMode: createMode
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    //checkov:skip=CKV_AZURE_189:The app reads the certificate over the public endpoint without VNet integration; reads need Entra ID and the Key Vault Secrets User role. Use a private endpoint to close it.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      //checkov:skip=CKV_AZURE_109:Function Apps without VNet integration are not a trusted Azure service, so a Deny default would lock the app out; reads need Entra ID + Key Vault Secrets User. Add VNet integration + a private endpoint to deny by default.
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

output name string = vault.name
