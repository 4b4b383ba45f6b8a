//! The Altinn side of `aos status`: the Maskinporten key and its certificate, and the Events
//! subscriptions. Listing the subscriptions takes a token (one grant and one exchange), which is
//! also the proof that the key is accepted; nothing is changed at Altinn.

use time::OffsetDateTime;

use super::CHECK_TIMEOUT;
use super::report::{
    AltinnPart, CertificateStatus, KeyStatus, SubscriptionStatus, SubscriptionsStatus,
};
use crate::altinn::AltinnClient;
use crate::altinn::subscriptions::{app_source_filter, redact_endpoint};
use crate::auth::keys::rfc3339;
use crate::config::{InvalidSettings, Settings, TokenSettings};
use crate::redact::Redacted;

/// The key and the subscriptions; without complete settings, why they were not checked.
pub(super) async fn gather(settings: Result<&Settings, &InvalidSettings>) -> AltinnPart {
    let settings = match settings {
        Ok(settings) => settings,
        Err(invalid) => {
            let why = format!("not checked: {}", Redacted(invalid));
            return AltinnPart {
                key: KeyStatus {
                    status: "not checked",
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
            };
        }
    };
    let (key, subscriptions) = tokio::join!(key(settings), subscriptions(settings));
    AltinnPart {
        key,
        subscriptions,
        not_checked: false,
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
                status: "ok",
                source: "AltinnApplicationOwnerSystemSettings__AltinnToken (a fixed token, no key)"
                    .into(),
                certificate: None,
                error: None,
            };
        }
        TokenSettings::Maskinporten(m) => m,
    };
    let source = m.key.setting().to_string();
    match tokio::time::timeout(CHECK_TIMEOUT, crate::auth::keys::load(&m.key)).await {
        Ok(Ok(key)) => KeyStatus {
            status: "ok",
            source,
            certificate: key.certificate().map(|cert| CertificateStatus {
                subject: cert.subject.clone(),
                not_after: rfc3339(cert.not_after),
                days_left: days_left(cert.not_after, OffsetDateTime::now_utc()),
            }),
            error: None,
        },
        Ok(Err(e)) => KeyStatus {
            status: "not loadable",
            source,
            certificate: None,
            error: Some(Redacted(anyhow::Error::from(e)).to_string()),
        },
        Err(_) => KeyStatus {
            status: "not loadable",
            source,
            certificate: None,
            error: Some(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
        },
    }
}

async fn subscriptions(settings: &Settings) -> SubscriptionsStatus {
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
    let listed = match tokio::time::timeout(CHECK_TIMEOUT, listed).await {
        Ok(Ok(listed)) => listed,
        Ok(Err(e)) => return not_listed(Redacted(e).to_string()),
        Err(_) => return not_listed(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    };
    let missing = settings
        .reconcile_apps
        .iter()
        .filter(|(org, app)| {
            let filter = app_source_filter(&settings.apps_base_url, org, app);
            !listed
                .iter()
                .any(|s| s.validated && s.source_filter.as_deref() == Some(filter.as_str()))
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
