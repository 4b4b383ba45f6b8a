// Key Vault in RBAC mode for the Maskinporten certificate (secret `maskinportenclientcert`,
// a base64 PKCS#12). The app's identity may read secrets, nothing else. The deployer (when its
// principal id is given) may write them, so the certificate goes in before the code goes live.
//
// Purge protection keeps a deleted vault's name taken for softDeleteRetentionInDays: deploying
// the same name again then fails until `createMode: 'recover'` brings the deleted vault back
// (with its secrets), or another name is chosen (main.bicep's keyVaultName).

param location string
param keyVaultName string
@description('Reuse the existing vault named keyVaultName (RBAC mode): only role assignments are added to it.')
param reuseExisting bool = false
@description('default: create (or update) the vault; recover: recover a soft-deleted vault of this name (after a deleted resource group, with purge protection).')
@allowed([
  'default'
  'recover'
])
param createMode string = 'default'
param principalId string
@description('Object id of the deployer (user or CI principal) that writes the certificate; empty = none.')
param deployerPrincipalId string = ''
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param deployerPrincipalType string = 'User'
param tags object = {}

var roles = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
}

module created 'keyvault-vault.bicep' = if (!reuseExisting) {
  name: 'keyvault-vault'
  params: {
    location: location
    keyVaultName: keyVaultName
    createMode: createMode
    tags: tags
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, principalId, roles.keyVaultSecretsUser)
  dependsOn: [
    created
  ]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource deployerOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  scope: vault
  name: guid(vault.id, deployerPrincipalId, roles.keyVaultSecretsOfficer)
  dependsOn: [
    created
  ]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
  }
}

output name string = keyVaultName
output id string = vault.id
output uri string = 'https://${keyVaultName}${environment().suffixes.keyvaultDns}/'
