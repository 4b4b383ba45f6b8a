// Key Vault in RBAC mode for the Maskinporten certificate (secret `maskinportenclientcert`,
// a base64 PKCS#12). The app's identity may read secrets, nothing else.

param location string
param keyVaultName string
param principalId string
param tags object = {}

var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
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

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, principalId, keyVaultSecretsUser)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
