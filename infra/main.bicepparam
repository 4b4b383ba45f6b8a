// Example parameters: `scripts/deploy -g rg-aos-tt02 -l norwayeast --certificate maskinporten.p12`
// or `az deployment group create -g rg-aos-tt02 -f infra/main.bicep -p infra/main.bicepparam`.
// Every parameter and its default: infra/main.bicep; what they do: docs/deploy.md.
using './main.bicep'

param baseName = 'aos'
param altinnEnvironment = 'tt02'
param org = 'ttd'
param maskinportenClientId = '00000000-0000-0000-0000-000000000000'
param hostingPlan = 'FlexConsumption'
// Archive protection (defaults shown): versioning and 30-day soft delete on, WORM off.
param blobVersioning = true
param blobSoftDeleteDays = 30
param archiveImmutabilityDays = 0
// Monitoring: where alerts go (or existingActionGroupId).
param alertEmail = ''
