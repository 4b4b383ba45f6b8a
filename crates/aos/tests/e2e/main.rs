//! The end-to-end suites: the real `aos` binary against Azurite and the Altinn simulator, under
//! the Functions host harness (`aos serve`) or as `aos run`, plus the CLI commands.
//!
//! One test binary (a module per suite) so the test kit compiles once; `cargo nextest run -E
//! 'test(/^functions_e2e::/)'` runs one suite.

mod archive_truth;
mod auth_check_config;
mod auth_grant;
mod auth_keys;
mod auth_keyvault;
mod auth_token;
mod catchup_e2e;
mod chaos_e2e;
mod cli;
mod cli_conventions;
mod container_entrypoint;
mod deploy_package;
mod deploy_script;
mod dev_smoke;
mod edge_e2e;
mod feedback_e2e;
mod functions_e2e;
mod hardening_e2e;
mod harness;
mod health_e2e;
mod imds_e2e;
mod long_run;
mod no_secrets;
mod observability;
mod packaging;
mod poison_cli;
mod properties;
mod reconcile_e2e;
mod replica_soak;
mod security_e2e;
mod standalone_e2e;
mod status_cli;
mod storage_faults;
mod subscriptions_cli;
mod subscriptions_functions;
