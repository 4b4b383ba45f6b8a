// Example parameters: `az deployment group create -g rg-aos-tt02 -f infra/main.bicep -p infra/main.bicepparam`
using './main.bicep'

param baseName = 'aos'
param altinnEnvironment = 'tt02'
param org = 'ttd'
param maskinportenClientId = '00000000-0000-0000-0000-000000000000'
param hostingPlan = 'FlexConsumption'
