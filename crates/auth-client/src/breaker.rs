//! The circuit breaker: after `failure_threshold` transient failures in a row (connection
//! errors, timeouts, 5xx answers) every call fails at once with
//! [`Error::CircuitOpen`](crate::Error::CircuitOpen) for `open_for`; then a single probe goes
//! through, and its outcome closes the breaker or opens it again for another `open_for`.
//!
//! The state machine is failsafe's (`consecutive_failures` with a constant pause). failsafe
//! lets every call through once half-open; this wrapper lets exactly one probe through at a
//! time, so a recovering service is not met by the whole backlog at once.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use failsafe::backoff::{self, Constant};
use failsafe::failure_policy::{self, ConsecutiveFailures};
use failsafe::{Instrument, StateMachine};

use crate::config::BreakerPolicy;
use crate::stats::{BreakerMetrics, BreakerState};

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

#[derive(Debug)]
struct Shared {
    state: AtomicU8,
    opened_at: Mutex<Option<Instant>>,
    probe_in_flight: AtomicBool,
    opened: AtomicU64,
    rejected: AtomicU64,
}

/// Mirrors failsafe's transitions, which it does not expose otherwise.
#[derive(Debug, Clone)]
struct Observer(Arc<Shared>);

impl Instrument for Observer {
    fn on_call_rejected(&self) {}

    fn on_open(&self) {
        self.0.state.store(OPEN, Ordering::SeqCst);
        if let Ok(mut at) = self.0.opened_at.lock() {
            *at = Some(failsafe::clock::now());
        }
        self.0.opened.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("auth_client_circuit_state").set(1.0);
        metrics::counter!("auth_client_circuit_opened_total").increment(1);
        tracing::warn!("auth service failing: circuit open, calls fail fast");
    }

    fn on_half_open(&self) {
        self.0.state.store(HALF_OPEN, Ordering::SeqCst);
        metrics::gauge!("auth_client_circuit_state").set(2.0);
        tracing::info!("auth service circuit half-open: probing");
    }

    fn on_closed(&self) {
        let was = self.0.state.swap(CLOSED, Ordering::SeqCst);
        metrics::gauge!("auth_client_circuit_state").set(0.0);
        if was != CLOSED {
            tracing::info!("auth service circuit closed");
        }
    }
}

type Machine = StateMachine<ConsecutiveFailures<Constant>, Observer>;

/// The breaker of one client (shared by its clones).
#[derive(Debug)]
pub(crate) struct Breaker {
    machine: Machine,
    shared: Arc<Shared>,
    open_for: Duration,
}

/// Permission to send one request; a probe's permission is given back when dropped, whether
/// or not its outcome was recorded (a cancelled probe lets the next call probe).
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    probe: Option<&'a Shared>,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(shared) = self.probe {
            shared.probe_in_flight.store(false, Ordering::SeqCst);
        }
    }
}

impl Breaker {
    pub(crate) fn new(policy: &BreakerPolicy) -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(CLOSED),
            opened_at: Mutex::new(None),
            probe_in_flight: AtomicBool::new(false),
            opened: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        });
        let policy_machine = failure_policy::consecutive_failures(
            policy.failure_threshold,
            backoff::constant(policy.open_for),
        );
        Self {
            machine: StateMachine::new(policy_machine, Observer(shared.clone())),
            shared,
            open_for: policy.open_for,
        }
    }

    /// Permission to send, or the time until a probe will be allowed.
    pub(crate) fn acquire(&self) -> Result<Permit<'_>, Duration> {
        if !self.machine.is_call_permitted() {
            return Err(self.reject());
        }
        if self.shared.state.load(Ordering::SeqCst) != HALF_OPEN {
            return Ok(Permit { probe: None });
        }
        if self
            .shared
            .probe_in_flight
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            Ok(Permit {
                probe: Some(&self.shared),
            })
        } else {
            Err(self.reject())
        }
    }

    fn reject(&self) -> Duration {
        self.shared.rejected.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("auth_client_circuit_rejections_total").increment(1);
        self.retry_in()
    }

    /// Time until an open breaker lets a probe through (zero when it already would, or a
    /// probe is in flight).
    pub(crate) fn retry_in(&self) -> Duration {
        if self.shared.state.load(Ordering::SeqCst) != OPEN {
            return Duration::ZERO;
        }
        let opened_at = self.shared.opened_at.lock().ok().and_then(|at| *at);
        opened_at.map_or(Duration::ZERO, |at| {
            (at + self.open_for).saturating_duration_since(failsafe::clock::now())
        })
    }

    /// Records the outcome of the request `permit` allowed: `failed` for a transient failure.
    pub(crate) fn record(&self, permit: Permit<'_>, failed: bool) {
        if failed {
            self.machine.on_error();
        } else {
            self.machine.on_success();
        }
        drop(permit);
    }

    pub(crate) fn metrics(&self) -> BreakerMetrics {
        BreakerMetrics {
            state: match self.shared.state.load(Ordering::SeqCst) {
                OPEN => BreakerState::Open,
                HALF_OPEN => BreakerState::HalfOpen,
                _ => BreakerState::Closed,
            },
            opened: self.shared.opened.load(Ordering::Relaxed),
            rejected: self.shared.rejected.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(&BreakerPolicy {
            failure_threshold: 3,
            open_for: Duration::from_secs(60),
        })
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_once() {
        failsafe::clock::freeze(|clock| {
            let b = breaker();
            // Two failures, a success: the count starts again.
            for failed in [true, true, false, true, true] {
                let permit = b.acquire().unwrap();
                b.record(permit, failed);
            }
            assert_eq!(b.metrics().state, BreakerState::Closed);
            let permit = b.acquire().unwrap();
            b.record(permit, true);
            assert_eq!(b.metrics().state, BreakerState::Open);
            assert_eq!(b.acquire().unwrap_err(), Duration::from_secs(60));

            clock.advance(Duration::from_secs(59));
            assert_eq!(b.acquire().unwrap_err(), Duration::from_secs(1));
            clock.advance(Duration::from_secs(2));
            let probe = b.acquire().unwrap();
            assert_eq!(b.metrics().state, BreakerState::HalfOpen);
            // While the probe is out, every other call is refused.
            assert!(b.acquire().is_err());
            // A failed probe opens it again for the whole pause.
            b.record(probe, true);
            assert_eq!(b.metrics().state, BreakerState::Open);
            assert_eq!(b.acquire().unwrap_err(), Duration::from_secs(60));

            clock.advance(Duration::from_secs(61));
            let probe = b.acquire().unwrap();
            b.record(probe, false);
            assert_eq!(b.metrics().state, BreakerState::Closed);
            assert!(b.acquire().is_ok());
            let m = b.metrics();
            assert_eq!((m.opened, m.rejected), (2, 4));
        });
    }

    #[test]
    fn a_cancelled_probe_lets_the_next_call_probe() {
        failsafe::clock::freeze(|clock| {
            let b = breaker();
            for _ in 0..3 {
                let permit = b.acquire().unwrap();
                b.record(permit, true);
            }
            clock.advance(Duration::from_secs(61));
            let probe = b.acquire().unwrap();
            assert!(b.acquire().is_err());
            drop(probe);
            let probe = b.acquire().unwrap();
            b.record(probe, false);
            assert_eq!(b.metrics().state, BreakerState::Closed);
        });
    }
}
