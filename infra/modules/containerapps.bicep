// `aos run` on Azure Container Apps (hostingPlan 'ContainerApps'): the webhook and the queue
// workers in one container app, scaled by KEDA on the depth of `events-inbound` (read with the
// app's user-assigned identity, no storage key), plus two scheduled Container Apps jobs for
// what the Functions timer does on the other plans: `aos reconcile` and `aos catch-up`.
//
// TLS: the ingress is external and https-only (allowInsecure false); Container Apps'
// managed ingress terminates TLS with a certificate for the app's FQDN, which is what Altinn
// Events calls (it requires https). The container itself listens on plain http :8080 inside
// the environment (the image's CMD: `aos run --listen 0.0.0.0:8080`).

param location string
param environmentName string
param appName string
param reconcileJobName string
param catchUpJobName string
@description('The image built from this repository\'s Dockerfile, e.g. myregistry.azurecr.io/altinn-aos:1.2.3.')
param image string
@description('Registry server to pull the image from with the identity (AcrPull on the registry), e.g. myregistry.azurecr.io; empty = a public image.')
param registryServer string = ''
param identityId string
param identityClientId string
param logAnalyticsName string
param storageAccountName string
param queueEndpoint string
param keyVaultName string
@description('The webhook secret (`?code=` on the webhook URL), written to Key Vault as aos-webhook-secret.')
@secure()
param webhookSecret string
param appSettings object
@minValue(0)
param minReplicas int = 1
@minValue(1)
param maxReplicas int = 10
@description('Messages waiting in events-inbound per replica before KEDA adds one.')
@minValue(1)
param queueLengthPerReplica int = 20
@description('Cron (UTC, 5 fields) for `aos reconcile`.')
param reconcileSchedule string = '15 * * * *'
@description('Cron (UTC, 5 fields) for `aos catch-up`.')
param catchUpSchedule string = '*/15 * * * *'
param tags object = {}

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource webhookSecretValue 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'aos-webhook-secret'
  properties: {
    //checkov:skip=CKV_AZURE_41:The webhook secret is rotated together with the Altinn subscriptions whose URLs carry it; an expiry date would silently break the webhook.
    value: webhookSecret
    contentType: 'text/plain'
  }
}

resource managedEnvironment 'Microsoft.App/managedEnvironments@2025-01-01' = {
  name: environmentName
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
  }
}

// The same settings as the Function App, with the identity-based queue connection `aos run`
// reads and the identity for blobs and Key Vault (Container Apps provides IDENTITY_ENDPOINT).
var settings = union(appSettings, {
  QueueStorageSettings__ConnectionString__queueServiceUri: queueEndpoint
  QueueStorageSettings__ConnectionString__credential: 'managedidentity'
  QueueStorageSettings__ConnectionString__clientId: identityClientId
  AZURE_CLIENT_ID: identityClientId
})
var env = [
  for item in items(settings): {
    name: item.key
    value: item.value
  }
]
var webhookSecretEnv = {
  name: 'AltinnApplicationOwnerSystemSettings__WebhookSecret'
  secretRef: 'webhook-secret'
}
var registries = empty(registryServer) ? [] : array({
  server: registryServer
  identity: identityId
})
var resources = {
  cpu: json('0.5')
  memory: '1Gi'
}

resource app 'Microsoft.App/containerApps@2025-01-01' = {
  name: appName
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  dependsOn: [
    webhookSecretValue
  ]
  properties: {
    environmentId: managedEnvironment.id
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: 8080
        transport: 'auto'
        allowInsecure: false
        traffic: [
          {
            latestRevision: true
            weight: 100
          }
        ]
      }
      secrets: [
        {
          name: 'webhook-secret'
          keyVaultUrl: '${vault.properties.vaultUri}secrets/aos-webhook-secret'
          identity: identityId
        }
      ]
      registries: registries
    }
    template: {
      containers: [
        {
          name: 'aos'
          image: image
          env: concat(env, array(webhookSecretEnv))
          resources: resources
          probes: [
            {
              // Alive = listening; readiness = storage reachable and the key loadable.
              type: 'Liveness'
              tcpSocket: {
                port: 8080
              }
              periodSeconds: 10
            }
            {
              type: 'Readiness'
              httpGet: {
                path: '/health'
                port: 8080
              }
              periodSeconds: 15
              failureThreshold: 4
            }
          ]
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
        rules: [
          {
            name: 'events-inbound-depth'
            azureQueue: {
              accountName: storageAccountName
              queueName: 'events-inbound'
              queueLength: queueLengthPerReplica
              identity: identityId
            }
          }
          {
            name: 'webhook-requests'
            http: {
              metadata: {
                concurrentRequests: '50'
              }
            }
          }
        ]
      }
    }
  }
}

// The scheduled commands run the same image with another argument list (ENTRYPOINT /aos stays).
var jobs = [
  {
    name: reconcileJobName
    schedule: reconcileSchedule
    args: [
      'reconcile'
    ]
  }
  {
    name: catchUpJobName
    schedule: catchUpSchedule
    args: [
      'catch-up'
    ]
  }
]

resource scheduled 'Microsoft.App/jobs@2025-01-01' = [
  for job in jobs: {
    name: job.name
    location: location
    tags: tags
    identity: {
      type: 'UserAssigned'
      userAssignedIdentities: {
        '${identityId}': {}
      }
    }
    properties: {
      environmentId: managedEnvironment.id
      configuration: {
        triggerType: 'Schedule'
        replicaTimeout: 3600
        replicaRetryLimit: 1
        scheduleTriggerConfig: {
          cronExpression: job.schedule
          parallelism: 1
          replicaCompletionCount: 1
        }
        registries: registries
      }
      template: {
        containers: [
          {
            name: 'aos'
            image: image
            args: job.args
            env: env
            resources: resources
          }
        ]
      }
    }
  }
]

output fqdn string = app.properties.configuration.ingress.fqdn
output name string = app.name
