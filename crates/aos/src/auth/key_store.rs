//! The Maskinporten key as the running process holds it: loaded when first needed, kept, and
//! loaded again on a timer and after Maskinporten refused it.
//!
//! Why not once at start: the key may live in Key Vault, and a vault that is unreachable or not
//! yet authorised (role assignments take minutes to propagate; the README uploads the
//! certificate after the package is live) must not keep the webhook — which needs no key — from
//! serving, nor make the host restart the handler in a loop. And a certificate that is rotated
//! in the vault (or a key file that is replaced) must be picked up without a restart.
//!
//! The rules, in [`KeyStore::get`]:
//! - a key younger than the reload interval, not refused, is used as is;
//! - otherwise it is loaded (one load at a time; callers that waited share its outcome);
//! - a failed load is not tried again before a backoff (1 s, doubling, at most
//!   [`MAX_BACKOFF`]) has passed, so a thousand retried messages do not hammer the vault;
//! - while no key was ever loaded, the failure is [`KeyError::Unavailable`] (retryable: the
//!   message is tried again later, nothing is poisoned for it), naming the setting;
//! - a failed *re*load keeps the key already held (a vault outage must not stop a working key)
//!   and logs a warning.
//!
//! Generic over the key type so these rules are unit-tested without key material.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::error::KeyError;

/// How often a held key is loaded again, so a rotated certificate is used within the hour even
/// if Maskinporten still accepts the old one.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// The first pause after a failed load; doubled after each further failure …
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// … up to this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One load of the key material.
pub type LoadFuture<T> = Pin<Box<dyn Future<Output = Result<T, KeyError>> + Send>>;
type Loader<T> = Box<dyn Fn() -> LoadFuture<T> + Send + Sync>;

/// The key, with when and how to load it again. One per process.
pub struct KeyStore<T> {
    load: Loader<T>,
    /// The setting that names the key's source, for error messages.
    setting: String,
    reload_every: Duration,
    state: Mutex<State<T>>,
    /// Held while a load runs: one load at a time.
    loading: tokio::sync::Mutex<()>,
}

struct State<T> {
    key: Option<Held<T>>,
    failure: Option<Failure>,
}

struct Held<T> {
    key: Arc<T>,
    loaded_at: Instant,
    /// Maskinporten refused it: load again at the next need.
    refused: bool,
}

struct Failure {
    error: KeyError,
    retry_at: Instant,
    backoff: Duration,
}

/// What [`KeyStore::get`] does after looking at the state.
enum Next<T> {
    Use(Arc<T>),
    Fail(KeyError),
    Load,
}

impl<T: Send + Sync> KeyStore<T> {
    /// A store with nothing loaded yet: the first [`KeyStore::get`] loads.
    pub fn new(
        setting: impl Into<String>,
        reload_every: Duration,
        load: impl Fn() -> LoadFuture<T> + Send + Sync + 'static,
    ) -> Self {
        KeyStore {
            load: Box::new(load),
            setting: setting.into(),
            reload_every,
            state: Mutex::new(State {
                key: None,
                failure: None,
            }),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// A store that already holds `key` (loaded at start), reloaded like any other.
    pub fn with_key(
        key: T,
        setting: impl Into<String>,
        reload_every: Duration,
        load: impl Fn() -> LoadFuture<T> + Send + Sync + 'static,
    ) -> Self {
        let store = Self::new(setting, reload_every, load);
        lock(&store.state).key = Some(Held {
            key: Arc::new(key),
            loaded_at: Instant::now(),
            refused: false,
        });
        store
    }

    /// The key held now, if any, without loading (`aos check-config` reports on it).
    pub fn current(&self) -> Option<Arc<T>> {
        lock(&self.state).key.as_ref().map(|h| h.key.clone())
    }

    /// The key to sign with, loading it if there is none, it is due for a reload, or it was
    /// refused.
    pub async fn get(&self) -> Result<Arc<T>, KeyError> {
        if let Next::Use(key) = self.next(false) {
            return Ok(key);
        }
        let _loading = self.loading.lock().await;
        match self.next(true) {
            Next::Use(key) => return Ok(key),
            Next::Fail(e) => return Err(e),
            Next::Load => {}
        }
        let result = (self.load)().await;
        let mut state = lock(&self.state);
        match result {
            Ok(key) => {
                let key = Arc::new(key);
                state.failure = None;
                state.key = Some(Held {
                    key: key.clone(),
                    loaded_at: Instant::now(),
                    refused: false,
                });
                Ok(key)
            }
            Err(error) => {
                let backoff = state
                    .failure
                    .as_ref()
                    .map_or(FIRST_BACKOFF, |f| (f.backoff * 2).min(MAX_BACKOFF));
                state.failure = Some(Failure {
                    error: error.clone(),
                    retry_at: Instant::now() + backoff,
                    backoff,
                });
                match &state.key {
                    Some(held) => {
                        tracing::warn!(
                            setting = %self.setting,
                            error = %error,
                            retry_in_secs = backoff.as_secs_f64(),
                            "cannot load the Maskinporten key again; using the one loaded before"
                        );
                        Ok(held.key.clone())
                    }
                    None => {
                        let e = self.unavailable(error, backoff);
                        tracing::warn!(error = %e, "no Maskinporten key yet");
                        Err(e)
                    }
                }
            }
        }
    }

    /// Maskinporten refused a grant signed with `key`: if it is still the one held, load again
    /// at the next [`KeyStore::get`] (subject to the backoff of a failing source).
    pub fn refused(&self, key: &Arc<T>) {
        let mut state = lock(&self.state);
        if let Some(held) = state.key.as_mut()
            && Arc::ptr_eq(&held.key, key)
        {
            held.refused = true;
        }
    }

    /// What to do now. Only with `loading` held may the answer be [`Next::Load`]; without it,
    /// anything but a usable key is "go and wait for the load lock".
    fn next(&self, loading: bool) -> Next<T> {
        let state = lock(&self.state);
        let now = Instant::now();
        if let Some(held) = &state.key
            && !held.refused
            && now.duration_since(held.loaded_at) < self.reload_every
        {
            return Next::Use(held.key.clone());
        }
        if !loading {
            return Next::Load;
        }
        match (&state.failure, &state.key) {
            (Some(f), Some(held)) if now < f.retry_at => Next::Use(held.key.clone()),
            (Some(f), None) if now < f.retry_at => {
                Next::Fail(self.unavailable(f.error.clone(), f.retry_at - now))
            }
            _ => Next::Load,
        }
    }

    fn unavailable(&self, cause: KeyError, retry_in: Duration) -> KeyError {
        KeyError::Unavailable {
            setting: self.setting.clone(),
            retry_in_secs: retry_in.as_secs_f64().ceil() as u64,
            cause: Box::new(cause),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A store of numbers whose loads succeed while `ok` is set, each returning the load count.
    fn store(reload_every: Duration) -> (KeyStore<u32>, Arc<AtomicU32>, Arc<Mutex<bool>>) {
        let loads = Arc::new(AtomicU32::new(0));
        let ok = Arc::new(Mutex::new(true));
        let (l, o) = (loads.clone(), ok.clone());
        let store = KeyStore::new("KeyVault__KeyVaultURI", reload_every, move || {
            let n = l.fetch_add(1, Ordering::SeqCst) + 1;
            let ok = *o.lock().unwrap();
            Box::pin(async move {
                if ok {
                    Ok(n)
                } else {
                    Err(KeyError::KeyVault("forbidden".into()))
                }
            })
        });
        (store, loads, ok)
    }

    #[tokio::test]
    async fn loads_on_first_need_and_keeps_the_key() {
        let (store, loads, _) = store(RELOAD_INTERVAL);
        assert!(store.current().is_none());
        assert_eq!(loads.load(Ordering::SeqCst), 0, "nothing loaded at start");
        assert_eq!(*store.get().await.unwrap(), 1);
        assert_eq!(*store.get().await.unwrap(), 1);
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_first_load_is_retryable_names_the_setting_and_backs_off() {
        let (store, loads, ok) = store(RELOAD_INTERVAL);
        *ok.lock().unwrap() = false;
        let e = store.get().await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot load it from KeyVault__KeyVaultURI (next attempt in 1 s): Key Vault: forbidden"
        );
        assert!(super::super::TokenError::Key(e).is_retryable());
        // Within the backoff the failure is answered without a load.
        store.get().await.unwrap_err();
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        *ok.lock().unwrap() = true;
        tokio::time::sleep(FIRST_BACKOFF).await;
        assert_eq!(*store.get().await.unwrap(), 2);
    }

    #[tokio::test]
    async fn reloads_on_the_timer_and_keeps_the_old_key_when_a_reload_fails() {
        let (store, loads, ok) = store(Duration::from_millis(50));
        assert_eq!(*store.get().await.unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(*store.get().await.unwrap(), 2, "reloaded on the timer");
        *ok.lock().unwrap() = false;
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(*store.get().await.unwrap(), 2, "the old key, not an error");
        assert_eq!(*store.get().await.unwrap(), 2, "backing off");
        assert_eq!(loads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_refused_key_is_loaded_again_once() {
        let (store, loads, _) = store(RELOAD_INTERVAL);
        let first = store.get().await.unwrap();
        store.refused(&first);
        let second = store.get().await.unwrap();
        assert_eq!(*second, 2);
        // A late refusal of the old key does not throw away the new one.
        store.refused(&first);
        assert_eq!(*store.get().await.unwrap(), 2);
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }
}
