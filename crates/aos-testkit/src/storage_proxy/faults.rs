//! Fault rules and the seeded decision of which request gets which fault.
//!
//! Decisions come from one `StdRng` seeded by the test, drawn once per matching probabilistic
//! rule per request, so the same seed and the same sequence of requests give the same faults.
//! (Concurrent clients make the sequence itself vary a little from run to run; the seed still
//! fixes the rate and the mix.)

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::classify::{Operation, Service};

/// What the proxy does instead of (or on top of) passing a request through.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// 503 `ServerBusy`, storage's throttling answer; the request never reaches storage.
    ServerBusy,
    /// 500 `InternalError`; the request never reaches storage.
    InternalError,
    /// 408 `OperationTimedOut`; the request never reaches storage.
    Timeout,
    /// The connection is reset (RST) without an answer; the request never reaches storage.
    Reset,
    /// The request is passed to storage and done, then the connection is reset instead of
    /// answering: the client cannot tell that its write succeeded (the hardest case for
    /// idempotency).
    LostResponse,
    /// The request is passed through and its answer held back this long.
    Delay(Duration),
}

impl Fault {
    /// The name fault counts use.
    pub fn kind(self) -> &'static str {
        match self {
            Fault::ServerBusy => "503 ServerBusy",
            Fault::InternalError => "500 InternalError",
            Fault::Timeout => "408 OperationTimedOut",
            Fault::Reset => "connection reset",
            Fault::LostResponse => "response lost (reset after the write)",
            Fault::Delay(_) => "delayed response",
        }
    }
}

/// Which requests a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scope {
    Any,
    Service(Service),
    Operation(Operation),
}

impl Scope {
    fn matches(self, op: Operation) -> bool {
        match self {
            Scope::Any => true,
            Scope::Service(service) => op.service() == service,
            Scope::Operation(wanted) => op == wanted,
        }
    }
}

/// When a rule fires for a request in its scope.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum When {
    /// With this probability (0–1), drawn from the seeded generator.
    Probability(f64),
    /// For the next this many requests.
    Next(u32),
}

/// One fault rule: rules are tried in the order they were added, and the first that fires
/// decides the request's fault.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultRule {
    pub scope: Scope,
    pub when: When,
    pub fault: Fault,
}

impl FaultRule {
    /// `fault` for a share `probability` of the requests in `scope`.
    pub fn sometimes(scope: Scope, probability: f64, fault: Fault) -> FaultRule {
        FaultRule {
            scope,
            when: When::Probability(probability),
            fault,
        }
    }

    /// `fault` for the next `count` requests in `scope`.
    pub fn next(scope: Scope, count: u32, fault: Fault) -> FaultRule {
        FaultRule {
            scope,
            when: When::Next(count),
            fault,
        }
    }
}

/// The rules and the seeded generator that decides them.
pub struct Injector {
    rng: StdRng,
    rules: Vec<FaultRule>,
}

impl Injector {
    pub fn new(seed: u64) -> Injector {
        Injector {
            rng: StdRng::seed_from_u64(seed),
            rules: Vec::new(),
        }
    }

    pub fn add(&mut self, rule: FaultRule) {
        self.rules.push(rule);
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The fault for one request of `op`, if any. Every probabilistic rule in scope draws, even
    /// after an earlier rule fired, so each rule sees the same draws whatever the others do.
    pub fn decide(&mut self, op: Operation) -> Option<Fault> {
        let mut decided = None;
        for rule in &mut self.rules {
            if !rule.scope.matches(op) {
                continue;
            }
            let fires = match &mut rule.when {
                When::Probability(p) => self.rng.random_bool(p.clamp(0.0, 1.0)),
                When::Next(0) => false,
                When::Next(left) => {
                    if decided.is_none() {
                        *left -= 1;
                    }
                    true
                }
            };
            if fires && decided.is_none() {
                decided = Some(rule.fault);
            }
        }
        decided
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(seed: u64) -> Vec<Option<Fault>> {
        let mut injector = Injector::new(seed);
        injector.add(FaultRule::sometimes(
            Scope::Service(Service::Blob),
            0.3,
            Fault::ServerBusy,
        ));
        injector.add(FaultRule::sometimes(Scope::Any, 0.2, Fault::Reset));
        (0..200)
            .map(|i| {
                injector.decide(if i % 2 == 0 {
                    Operation::PutBlob
                } else {
                    Operation::QueuePut
                })
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_faults_and_another_seed_others() {
        assert_eq!(sequence(7), sequence(7));
        assert_ne!(sequence(7), sequence(8));
    }

    #[test]
    fn rules_apply_only_in_their_scope_at_about_their_rate() {
        let faults = sequence(42);
        let queue_busy = faults
            .iter()
            .skip(1)
            .step_by(2)
            .filter(|f| **f == Some(Fault::ServerBusy))
            .count();
        assert_eq!(queue_busy, 0, "a blob rule never fires for a queue request");
        let blob_busy = faults
            .iter()
            .step_by(2)
            .filter(|f| **f == Some(Fault::ServerBusy))
            .count();
        assert!(
            (10..=50).contains(&blob_busy),
            "about 30 of 100: {blob_busy}"
        );
    }

    #[test]
    fn next_n_fires_exactly_n_times_in_scope() {
        let mut injector = Injector::new(1);
        injector.add(FaultRule::next(
            Scope::Operation(Operation::PutBlockList),
            2,
            Fault::Timeout,
        ));
        assert_eq!(injector.decide(Operation::PutBlob), None);
        assert_eq!(
            injector.decide(Operation::PutBlockList),
            Some(Fault::Timeout)
        );
        assert_eq!(
            injector.decide(Operation::PutBlockList),
            Some(Fault::Timeout)
        );
        assert_eq!(injector.decide(Operation::PutBlockList), None);
    }

    #[test]
    fn the_first_rule_that_fires_wins_and_a_later_next_n_is_not_used_up() {
        let mut injector = Injector::new(1);
        injector.add(FaultRule::next(Scope::Any, 1, Fault::InternalError));
        injector.add(FaultRule::next(Scope::Any, 1, Fault::ServerBusy));
        assert_eq!(
            injector.decide(Operation::BlobGet),
            Some(Fault::InternalError)
        );
        assert_eq!(injector.decide(Operation::BlobGet), Some(Fault::ServerBusy));
        assert_eq!(injector.decide(Operation::BlobGet), None);
    }
}
