// The webhook secret of `aos run` on Container Apps (`?code=` on the webhook URL), in Key Vault
// as aos-webhook-secret. A module of its own so the caller can write it only when a value is
// given (a redeploy without one keeps the vault's, and with it the URL the subscriptions carry).

param keyVaultName string
@secure()
param value string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'aos-webhook-secret'
  properties: {
    //checkov:skip=CKV_AZURE_41:The webhook secret is rotated together with the Altinn subscriptions whose URLs carry it; an expiry date would silently break the webhook.
    value: value
    contentType: 'text/plain'
  }
}
