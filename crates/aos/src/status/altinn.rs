//! The Altinn side of `aos status`: the Maskinporten key and its certificate, and the Events
//! subscriptions. Listing the subscriptions takes a token (one grant and one exchange), which is
//! also the proof that the key is accepted; nothing is changed at Altinn.

use time::OffsetDateTime;

use super::bounded;
use super::report::{
    AltinnPart, CertificateStatus, KeyState, KeyStatus, SubscriptionStatus, SubscriptionsStatus,
};
use crate::altinn::AltinnClient;
use crate::altinn::subscriptions::{app_source_filter, redact_endpoint};
use crate::auth::keys::{Expiry, rfc3339};
use crate::config::{InvalidSettings, SettingSource, Settings, TokenSettings};
use crate::redact::Redacted;

/// The webhook URL the subscriptions should deliver to, when the operator set it.
pub(super) const WEBHOOK_URL_SETTING: &str = "AltinnApplicationOwnerSystemSettings__WebhookUrl";

/// The key and the subscriptions; without complete settings, why they were not checked.
pub(super) async fn gather(
    settings: Result<&Settings, &InvalidSettings>,
    source: &SettingSource,
    webhook: Option<&str>,
) -> AltinnPart {
    let settings = match settings {
        Ok(settings) => settings,
        Err(invalid) => {
            let why = format!("not checked: {}", Redacted(invalid));
            // Absent settings (a storage-only shell) are why nothing was checked; a setting
            // that is set and wrong is a problem of its own.
            let malformed: Vec<_> = invalid
                .errors()
                .iter()
                .filter(|e| source.get(&e.name).is_some())
                .map(|e| Redacted(e).to_string())
                .collect();
            return AltinnPart {
                key: KeyStatus {
                    status: KeyState::NotChecked,
                    source: "-".into(),
                    certificate: None,
                    error: Some(why.clone()),
                },
                subscriptions: SubscriptionsStatus {
                    checked: false,
                    error: Some(why),
                    items: Vec::new(),
                    missing: Vec::new(),
                },
                not_checked: true,
                settings_error: (!malformed.is_empty()).then(|| malformed.join("; ")),
            };
        }
    };
    let (key, subscriptions) = tokio::join!(key(settings), subscriptions(settings, webhook));
    AltinnPart {
        key,
        subscriptions,
        not_checked: false,
        settings_error: None,
    }
}

/// Days left, rounded down: a certificate that ended an hour ago has -1.
fn days_left(not_after: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (not_after - now).whole_seconds().div_euclid(86_400)
}

async fn key(settings: &Settings) -> KeyStatus {
    let m = match &settings.token {
        TokenSettings::Static(_) => {
            return KeyStatus {
                status: KeyState::Ok,
                source: "AltinnApplicationOwnerSystemSettings__AltinnToken (a fixed token, no key)"
                    .into(),
                certificate: None,
                error: None,
            };
        }
        TokenSettings::Maskinporten(m) => m,
    };
    let source = m.key.setting().to_string();
    match bounded(crate::auth::keys::load(&m.key)).await {
        Ok(key) => KeyStatus {
            status: KeyState::Ok,
            source,
            certificate: key.certificate().map(|cert| {
                let now = OffsetDateTime::now_utc();
                CertificateStatus {
                    subject: cert.subject.clone(),
                    not_after: rfc3339(cert.not_after),
                    days_left: days_left(cert.not_after, now),
                    not_yet_valid: cert.expiry(now) == Expiry::NotYetValid,
                }
            }),
            error: None,
        },
        Err(e) => KeyStatus {
            status: KeyState::NotLoadable,
            source,
            certificate: None,
            error: Some(e),
        },
    }
}

async fn subscriptions(settings: &Settings, webhook: Option<&str>) -> SubscriptionsStatus {
    let listed = async {
        let tokens =
            crate::auth::provider_from_settings(&settings.token, &settings.platform_base_url)
                .await
                .map_err(anyhow::Error::from)?;
        let altinn = AltinnClient::new(
            settings.apps_base_url.clone(),
            settings.platform_base_url.clone(),
            tokens,
        );
        altinn
            .list_subscriptions()
            .await
            .map_err(anyhow::Error::from)
    };
    let listed = match bounded(listed).await {
        Ok(listed) => listed,
        Err(why) => return not_listed(why),
    };
    let missing = settings
        .reconcile_apps
        .iter()
        .filter(|(org, app)| {
            let filter = app_source_filter(&settings.apps_base_url, org, app);
            !listed.iter().any(|s| {
                s.validated
                    && s.source_filter.as_deref() == Some(filter.as_str())
                    && webhook.is_none_or(|url| s.end_point.as_deref() == Some(url))
            })
        })
        .map(|(org, app)| format!("{}/{}", org.as_str(), app.as_str()))
        .collect();
    SubscriptionsStatus {
        checked: true,
        error: None,
        items: listed
            .into_iter()
            .map(|s| SubscriptionStatus {
                id: s.id,
                validated: s.validated,
                source: s.source_filter,
                type_filter: s.type_filter,
                endpoint: s.end_point.as_deref().map(redact_endpoint),
            })
            .collect(),
        missing,
    }
}

fn not_listed(why: String) -> SubscriptionsStatus {
    SubscriptionsStatus {
        checked: false,
        error: Some(why),
        items: Vec::new(),
        missing: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn days_left_round_down_and_go_negative_once_expired() {
        let now = datetime!(2026-12-01 12:00 UTC);
        assert_eq!(days_left(datetime!(2026-12-11 11:00 UTC), now), 9);
        assert_eq!(days_left(datetime!(2026-12-31 12:00 UTC), now), 30);
        assert_eq!(days_left(datetime!(2026-12-01 13:00 UTC), now), 0);
        assert_eq!(days_left(datetime!(2026-12-01 11:00 UTC), now), -1);
    }
}
