//! The Maskinporten key as the running process holds it: loaded when first needed, kept, and
//! loaded again on a timer and after Maskinporten refused it.
//!
//! Why not once at start: the key may live in Key Vault, and a vault that is unreachable or not
//! yet authorised (role assignments take minutes to propagate; docs/deploy.md uploads the
//! certificate after the package is live) must not keep the webhook — which needs no key — from
//! serving, nor make the host restart the handler in a loop. And a certificate that is rotated
//! in the vault (or a key file that is replaced) must be picked up without a restart.
//!
//! The rules, in [`KeyStore::get`]:
//! - a key younger than the reload interval, not refused, is used as is;
//! - a key *due* for its timed reload is still used as is, and the reload runs in the
//!   background: a vault that hangs at the hourly reload must not stall every request that
//!   needs a token (callers wait for a load only when there is no usable key: none yet, or the
//!   one held was refused). The timed reload is also started by a timer, so it normally runs
//!   before any caller finds the key due;
//! - one load at a time, in its own task: callers that wait share its outcome, and a caller that
//!   gives up (its request was cancelled) neither cancels the load nor counts as a failure; a
//!   load cut off without an outcome (its runtime shut down) records nothing either;
//! - a load has a total time limit ([`LOAD_TIMEOUT`]): running out of it is a failed load;
//! - a failed load is not tried again before a backoff (1 s, doubling, at most
//!   [`MAX_BACKOFF`]) has passed, so a thousand retried messages do not hammer the vault;
//! - while no key was ever loaded, the failure is [`KeyError::Unavailable`] (retryable: the
//!   message is tried again later, nothing is poisoned for it), naming the setting;
//! - a failed *re*load keeps the key already held (a vault outage must not stop a working key)
//!   and logs a warning.
//!
//! **A new key is on probation until Maskinporten accepted it once** ([`KeyStore::accepted`]).
//! A timed reload that finds a different key uses it, but keeps the key it replaces; if
//! Maskinporten refuses the new one before it was ever accepted ([`KeyStore::refused`]), the
//! store goes back to the previous key, which the grant is retried with. Why this and not "retry
//! with the previous key on every refusal": a certificate is often put into the vault before it
//! is registered with Maskinporten (or registered by someone else, later); with this rule the
//! working key keeps working meanwhile at the cost of one refused grant per reload interval,
//! and once the new key has been accepted the old one is dropped, so a key Maskinporten has
//! revoked is never tried again. A key that was accepted and is then refused (the old
//! certificate deregistered) is simply loaded again, as before.
//!
//! Generic over the key type so these rules are unit-tested without key material.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::error::KeyError;

/// How often a held key is loaded again, so a rotated certificate is used within the hour even
/// if Maskinporten still accepts the old one.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// The most one load may take, all retries included. The vault client's own timeouts and
/// retries are per request; a vault that accepts connections and never answers could otherwise
/// hold a first load (and every step waiting for it) for minutes.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The first pause after a failed load; doubled after each further failure …
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// … up to this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One load of the key material.
pub type LoadFuture<T> = Pin<Box<dyn Future<Output = Result<T, KeyError>> + Send>>;
type Loader<T> = Box<dyn Fn() -> LoadFuture<T> + Send + Sync>;

/// The key, with when and how to load it again. One per process.
pub struct KeyStore<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    load: Loader<T>,
    /// The setting that names the key's source, for error messages.
    setting: String,
    reload_every: Duration,
    load_timeout: Duration,
    state: Mutex<State<T>>,
    /// Woken when a load ends (with or without an outcome).
    load_ended: Notify,
}

struct State<T> {
    key: Option<Held<T>>,
    failure: Option<Failure>,
    /// A load task is running.
    loading: bool,
}

struct Held<T> {
    key: Arc<T>,
    loaded_at: Instant,
    /// Maskinporten refused it: load again at the next need.
    refused: bool,
    /// Maskinporten accepted a grant signed with it.
    accepted: bool,
    /// The accepted key this one replaced, kept until this one is accepted (see the module
    /// documentation).
    previous: Option<Arc<T>>,
}

impl<T> Held<T> {
    fn new(key: Arc<T>, previous: Option<Arc<T>>) -> Self {
        Held {
            key,
            loaded_at: Instant::now(),
            refused: false,
            accepted: false,
            previous,
        }
    }
}

struct Failure {
    error: KeyError,
    retry_at: Instant,
    backoff: Duration,
}

/// What [`KeyStore::get`] does after looking at the state.
enum Next<T> {
    Use(Arc<T>),
    /// Use this key, and start a load in the background if none runs.
    UseAndReload(Arc<T>),
    Fail(KeyError),
    /// Wait for a load (starting one if none runs).
    Wait,
}

impl<T: PartialEq + Send + Sync + 'static> KeyStore<T> {
    /// A store with nothing loaded yet: the first [`KeyStore::get`] loads.
    pub fn new(
        setting: impl Into<String>,
        reload_every: Duration,
        load: impl Fn() -> LoadFuture<T> + Send + Sync + 'static,
    ) -> Self {
        Self::with_timeout(setting, reload_every, LOAD_TIMEOUT, load)
    }

    /// [`KeyStore::new`] with a time limit per load other than [`LOAD_TIMEOUT`] (tests).
    pub fn with_timeout(
        setting: impl Into<String>,
        reload_every: Duration,
        load_timeout: Duration,
        load: impl Fn() -> LoadFuture<T> + Send + Sync + 'static,
    ) -> Self {
        KeyStore {
            inner: Arc::new(Inner {
                load: Box::new(load),
                setting: setting.into(),
                reload_every,
                load_timeout,
                state: Mutex::new(State {
                    key: None,
                    failure: None,
                    loading: false,
                }),
                load_ended: Notify::new(),
            }),
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
        lock(&store.inner.state).key = Some(Held::new(Arc::new(key), None));
        store
    }

    /// The key held now, if any, without loading (`aos check-config` reports on it).
    pub fn current(&self) -> Option<Arc<T>> {
        lock(&self.inner.state).key.as_ref().map(|h| h.key.clone())
    }

    /// The key to sign with: the one held unless there is none or it was refused, in which case
    /// this waits for a load (at most [`LOAD_TIMEOUT`]). A key due for its timed reload is
    /// returned at once while the reload runs in the background.
    pub async fn get(&self) -> Result<Arc<T>, KeyError> {
        loop {
            let ended = self.inner.load_ended.notified();
            tokio::pin!(ended);
            {
                let mut state = lock(&self.inner.state);
                match self.inner.next(&state) {
                    Next::Use(key) => return Ok(key),
                    Next::Fail(e) => return Err(e),
                    Next::UseAndReload(key) => {
                        self.start_load(&mut state);
                        return Ok(key);
                    }
                    Next::Wait => {
                        self.start_load(&mut state);
                        // Registered while the state is locked, so the end of the load (which
                        // updates the state under the same lock, then notifies) is not missed.
                        ended.as_mut().enable();
                    }
                }
            }
            ended.await;
        }
    }

    /// Maskinporten accepted a grant signed with `key`: a new key's probation ends and the key
    /// it replaced is dropped.
    pub fn accepted(&self, key: &Arc<T>) {
        let mut state = lock(&self.inner.state);
        if let Some(held) = state.key.as_mut()
            && Arc::ptr_eq(&held.key, key)
        {
            held.accepted = true;
            held.previous = None;
        }
    }

    /// Maskinporten refused a grant signed with `key`. If it is a new key never accepted and
    /// the key it replaced is still kept, that key is used again (until the next timed reload
    /// tries the new one again); otherwise, if it is still the one held, it is loaded again at
    /// the next [`KeyStore::get`] (subject to the backoff of a failing source).
    pub fn refused(&self, key: &Arc<T>) {
        let mut state = lock(&self.inner.state);
        let Some(held) = state.key.as_mut() else {
            return;
        };
        if !Arc::ptr_eq(&held.key, key) {
            return;
        }
        match held.previous.take() {
            Some(previous) if !held.accepted => {
                tracing::warn!(
                    setting = %self.inner.setting,
                    "Maskinporten refused the key loaded again before accepting it once; using \
                     the previous key until the next reload"
                );
                let mut back = Held::new(previous, None);
                back.accepted = true;
                *held = back;
                drop(state);
                schedule_reload(&self.inner, self.inner.reload_every);
            }
            _ => held.refused = true,
        }
    }

    fn start_load(&self, state: &mut State<T>) {
        start_load(&self.inner, state);
    }
}

/// Starts a load in its own task unless one runs. The caller holds the state lock.
fn start_load<T: PartialEq + Send + Sync + 'static>(inner: &Arc<Inner<T>>, state: &mut State<T>) {
    if state.loading {
        return;
    }
    state.loading = true;
    let guard = LoadGuard {
        inner: inner.clone(),
        ended: false,
    };
    let load = (inner.load)();
    tokio::spawn(async move {
        let inner = &guard.inner;
        let result = match tokio::time::timeout(inner.load_timeout, load).await {
            Ok(result) => result,
            Err(_) => Err(KeyError::TimedOut {
                secs: inner.load_timeout.as_secs_f64().ceil() as u64,
            }),
        };
        guard.end(result);
    });
}

/// Looks again after `after` and starts the timed reload if it is due, so a rotated key is
/// read on schedule even by a process that needs no token meanwhile (and the first grant after
/// the interval finds it already loaded). Holds the store weakly: a dropped store ends it.
fn schedule_reload<T: PartialEq + Send + Sync + 'static>(inner: &Arc<Inner<T>>, after: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak = Arc::downgrade(inner);
    runtime.spawn(async move {
        tokio::time::sleep(after).await;
        if let Some(inner) = weak.upgrade() {
            let mut state = lock(&inner.state);
            if let Next::UseAndReload(_) = inner.next(&state) {
                start_load(&inner, &mut state);
            }
        }
    });
}

/// A running load. Ending it records its outcome; dropped without an outcome (its task was cut
/// off when the runtime shut down), it only lets the next caller start another load: a load
/// that did not finish says nothing about the key's source.
struct LoadGuard<T> {
    inner: Arc<Inner<T>>,
    ended: bool,
}

impl<T: PartialEq + Send + Sync + 'static> LoadGuard<T> {
    fn end(mut self, result: Result<T, KeyError>) {
        let next_look = self.inner.record(result);
        self.ended = true;
        if let Some(after) = next_look {
            schedule_reload(&self.inner, after);
        }
    }
}

impl<T> Drop for LoadGuard<T> {
    fn drop(&mut self) {
        if !self.ended {
            lock(&self.inner.state).loading = false;
        }
        self.inner.load_ended.notify_waiters();
    }
}

impl<T: PartialEq> Inner<T> {
    /// What to do now.
    fn next(&self, state: &State<T>) -> Next<T> {
        let now = Instant::now();
        let backing_off = state.failure.as_ref().is_some_and(|f| now < f.retry_at);
        match &state.key {
            Some(held) if !held.refused => {
                if now.duration_since(held.loaded_at) < self.reload_every
                    || backing_off
                    || state.loading
                {
                    Next::Use(held.key.clone())
                } else {
                    Next::UseAndReload(held.key.clone())
                }
            }
            _ if state.loading => Next::Wait,
            // A refused key and a failing source: the refused key is all there is.
            Some(held) if backing_off => Next::Use(held.key.clone()),
            None if backing_off => {
                let f = state.failure.as_ref().expect("backing off after a failure");
                Next::Fail(self.unavailable(f.error.clone(), f.retry_at - now))
            }
            _ => Next::Wait,
        }
    }

    /// The outcome of a load, into the state; when to look again for the timed reload (none
    /// while there is no key: the next caller loads).
    fn record(&self, result: Result<T, KeyError>) -> Option<Duration> {
        let mut state = lock(&self.state);
        state.loading = false;
        match result {
            Ok(key) => {
                state.failure = None;
                state.key = Some(match state.key.take() {
                    // The same key again: it keeps its standing.
                    Some(mut held) if *held.key == key => {
                        held.loaded_at = Instant::now();
                        held.refused = false;
                        held
                    }
                    // A new key replacing a working one: on probation, the working one kept.
                    Some(held) if !held.refused => {
                        let previous = if held.accepted {
                            Some(held.key)
                        } else {
                            held.previous
                        };
                        Held::new(Arc::new(key), previous)
                    }
                    _ => Held::new(Arc::new(key), None),
                });
                Some(self.reload_every)
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
                if state.key.is_some() {
                    tracing::warn!(
                        setting = %self.setting,
                        error = %error,
                        retry_in_secs = backoff.as_secs_f64(),
                        "cannot load the Maskinporten key again; using the one loaded before"
                    );
                    Some(backoff)
                } else {
                    let e = self.unavailable(error, backoff);
                    tracing::warn!(error = %e, "no Maskinporten key yet");
                    None
                }
            }
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

    /// Waits (generously) until the store hands out `want`.
    async fn until_key(store: &KeyStore<u32>, want: u32) {
        for _ in 0..500 {
            if *store.get().await.unwrap() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the store never handed out key {want}");
    }

    #[tokio::test]
    async fn reloads_on_the_timer_and_keeps_the_old_key_when_a_reload_fails() {
        let (store, loads, ok) = store(Duration::from_millis(50));
        assert_eq!(*store.get().await.unwrap(), 1);
        // Reloaded by the timer, with no caller asking.
        for _ in 0..500 {
            if store.current().is_some_and(|k| *k == 2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*store.current().unwrap(), 2, "reloaded on the timer");
        *ok.lock().unwrap() = false;
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(*store.get().await.unwrap(), 2, "the old key, not an error");
        tokio::task::yield_now().await;
        assert_eq!(*store.get().await.unwrap(), 2, "backing off");
        assert_eq!(loads.load(Ordering::SeqCst), 3);
    }

    /// A first load that never ends is cut off after the time limit: a retryable failure that
    /// names the setting, not a request held forever.
    #[tokio::test]
    async fn a_first_load_that_hangs_times_out_retryably() {
        let hang = Arc::new(Mutex::new(true));
        let h = hang.clone();
        let store = KeyStore::with_timeout(
            "KeyVault__KeyVaultURI",
            RELOAD_INTERVAL,
            Duration::from_millis(100),
            move || {
                let hang = *h.lock().unwrap();
                Box::pin(async move {
                    if hang {
                        std::future::pending::<()>().await;
                    }
                    Ok(7u32)
                })
            },
        );
        let e = tokio::time::timeout(Duration::from_secs(10), store.get())
            .await
            .expect("the load's time limit ends the wait")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot load it from KeyVault__KeyVaultURI (next attempt in 1 s): no answer within 1 s"
        );
        assert!(super::super::TokenError::Key(e).is_retryable());
        *hang.lock().unwrap() = false;
        tokio::time::sleep(FIRST_BACKOFF).await;
        assert_eq!(*store.get().await.unwrap(), 7);
    }

    /// A load cut off without an outcome (its runtime shut down) is not a failure: the next
    /// caller loads at once, with no backoff.
    #[test]
    fn a_load_cut_off_by_its_runtime_records_nothing() {
        let (store, loads, hang) = hanging_store(RELOAD_INTERVAL);
        *hang.lock().unwrap() = true;
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let waited = tokio::time::timeout(Duration::from_millis(50), store.get()).await;
            assert!(waited.is_err(), "still loading");
        });
        drop(runtime);
        *hang.lock().unwrap() = false;
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let key = runtime.block_on(store.get()).unwrap();
        assert_eq!(
            *key, 2,
            "a new load, not a failure and not a wait for the lost one"
        );
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    /// A reload that finds a new key which Maskinporten then refuses, before ever accepting it,
    /// goes back to the key it replaced; once a new key is accepted the old one is gone.
    #[tokio::test]
    async fn a_new_key_refused_before_it_was_accepted_falls_back_to_the_previous_one() {
        let (store, loads, _) = store(Duration::from_millis(50));
        let first = store.get().await.unwrap();
        store.accepted(&first);
        tokio::time::sleep(Duration::from_millis(60)).await;
        store.get().await.unwrap();
        until_key(&store, 2).await;
        let second = store.get().await.unwrap();
        store.refused(&second);
        let back = store.get().await.unwrap();
        assert!(Arc::ptr_eq(&back, &first), "the accepted key again");
        assert_eq!(loads.load(Ordering::SeqCst), 2, "no load for the fallback");

        // The next reload tries a new key again; accepted, it replaces the old one for good.
        tokio::time::sleep(Duration::from_millis(60)).await;
        store.get().await.unwrap();
        until_key(&store, 3).await;
        let third = store.get().await.unwrap();
        store.accepted(&third);
        store.refused(&third);
        let after = store.get().await.unwrap();
        assert_eq!(
            *after, 4,
            "an accepted key that is refused is loaded again, no fallback"
        );
    }

    /// The first key, or one loaded after a refusal, has nothing to fall back to: a refusal
    /// loads again.
    #[tokio::test]
    async fn a_key_with_nothing_before_it_is_loaded_again_when_refused() {
        let (store, _, _) = store(RELOAD_INTERVAL);
        let first = store.get().await.unwrap();
        store.refused(&first);
        let second = store.get().await.unwrap();
        assert_eq!(*second, 2);
        store.refused(&second);
        assert_eq!(*store.get().await.unwrap(), 3);
    }

    /// A store whose loads hang (never answer) while `hang` is set, else return the load count.
    fn hanging_store(reload_every: Duration) -> (KeyStore<u32>, Arc<AtomicU32>, Arc<Mutex<bool>>) {
        let loads = Arc::new(AtomicU32::new(0));
        let hang = Arc::new(Mutex::new(false));
        let (l, h) = (loads.clone(), hang.clone());
        let store = KeyStore::new("KeyVault__KeyVaultURI", reload_every, move || {
            let n = l.fetch_add(1, Ordering::SeqCst) + 1;
            let hang = *h.lock().unwrap();
            Box::pin(async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                Ok(n)
            })
        });
        (store, loads, hang)
    }

    /// A vault that stops answering at the hourly reload does not stall the callers: the key
    /// held is served while the reload runs in the background.
    #[tokio::test]
    async fn a_reload_that_hangs_serves_the_held_key() {
        let (store, loads, hang) = hanging_store(Duration::from_millis(50));
        assert_eq!(*store.get().await.unwrap(), 1);
        *hang.lock().unwrap() = true;
        tokio::time::sleep(Duration::from_millis(60)).await;
        for _ in 0..3 {
            let key = tokio::time::timeout(Duration::from_secs(5), store.get())
                .await
                .expect("get() must not wait for a hanging reload");
            assert_eq!(*key.unwrap(), 1, "the key held, while the reload runs");
        }
        assert_eq!(
            loads.load(Ordering::SeqCst),
            2,
            "one reload, not one per caller"
        );
    }

    /// A caller that gives up while the first load runs (its request was cancelled) neither
    /// wastes the load nor records a failure: the next caller gets that load's key.
    #[tokio::test]
    async fn a_cancelled_caller_does_not_cancel_or_fail_the_load() {
        let loads = Arc::new(AtomicU32::new(0));
        let l = loads.clone();
        let store = KeyStore::new("KeyVault__KeyVaultURI", RELOAD_INTERVAL, move || {
            let n = l.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(n)
            })
        });
        let cancelled = tokio::time::timeout(Duration::from_millis(50), store.get()).await;
        assert!(cancelled.is_err(), "the first caller gave up");
        assert_eq!(
            *store.get().await.unwrap(),
            1,
            "the same load's key, no error"
        );
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "the load was not started again"
        );
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
