//! Per-key rate limits that hold across instances without a store write per verification.
//!
//! Each instance counts locally from a *lease*: a share of the window's budget taken from the
//! store in one atomic step ([`ApiKeyRepository::lease`]), about a quarter of what the
//! instance last saw left of the window, at least one. A verification draws from the lease
//! with no I/O; an empty lease asks for another. The store never grants more than the limit
//! in a window, so the successes of all instances together never exceed it; the only loss is
//! budget leased to an instance that then stops being asked, which it gives back once its
//! lease has not been drawn from for a tenth of the window, between 50 ms and 1 s
//! ([`idle_give_back`]; [`RateLimiter::reconcile`], which the server runs every 50 ms). When
//! the store grants nothing, the instance refuses locally and asks again after
//! [`EXHAUSTED_RECHECK`] (budget given back elsewhere may reappear).
//!
//! The local window never moves backwards: a verification stamped just before a boundary
//! that reaches the lock after one stamped just after it counts in the later window (as
//! the store does, which serves a request for an earlier window from its current one), so
//! nothing leased is dropped by a window flipping back and forth.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};

use crate::model::{ApiKeyId, RateLimit};
use crate::ports::{ApiKeyRepository, Clock, LeaseRequest, StoreError};

/// How long an unused lease stays with an instance that is not drawing from it: a tenth of
/// the window, at least 50 ms and at most 1 s. Long enough that a key verified a few times a
/// second keeps its lease between verifications (one store write per lease, not two per
/// verification), short enough that budget held by an instance that stopped being asked is
/// soon usable elsewhere.
#[must_use]
pub fn idle_give_back(limit: RateLimit) -> Duration {
    (Duration::seconds(i64::from(limit.window_seconds())) / 10)
        .clamp(Duration::milliseconds(50), Duration::seconds(1))
}
/// How long an instance refuses locally after the store granted nothing, before it asks
/// again (never past the window's end).
pub const EXHAUSTED_RECHECK: Duration = Duration::milliseconds(50);

/// What a verification of a rate-limited key learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitState {
    /// The key's limit per window.
    pub limit: u32,
    /// Uses left in the window, as far as this instance knows (approximate across
    /// instances: its own lease plus what the store had not granted when it last asked).
    pub remaining: u32,
    /// Seconds until the window ends, rounded up.
    pub reset_seconds: u32,
}

/// One key's window as this instance sees it.
#[derive(Debug, Clone)]
struct Local {
    /// Held while this instance asks the store for a lease of the key: one request at a time
    /// per key and instance, so that verifications arriving together share one lease instead
    /// of each taking its own share of the window (which left other instances none).
    leasing: Arc<futures::lock::Mutex<()>>,
    limit: RateLimit,
    window_start: DateTime<Utc>,
    /// Leased and not used yet.
    left: u32,
    /// Granted in the window by every instance, as of the last lease.
    taken: u32,
    /// Last time a use was drawn from the lease (or the lease taken).
    last_draw: DateTime<Utc>,
    /// Refuse without asking until then.
    exhausted_until: Option<DateTime<Utc>>,
}

impl Local {
    fn new(limit: RateLimit, window_start: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        Self {
            leasing: Arc::default(),
            limit,
            window_start,
            left: 0,
            taken: 0,
            last_draw: now,
            exhausted_until: None,
        }
    }

    fn state(&self, now: DateTime<Utc>) -> RateLimitState {
        let unleased = self.limit.limit().saturating_sub(self.taken);
        RateLimitState {
            limit: self.limit.limit(),
            remaining: self.left.saturating_add(unleased).min(self.limit.limit()),
            reset_seconds: self.limit.reset_seconds(now.max(self.window_start)),
        }
    }

    /// The window of `limit` starting at `window_start`, afresh (the lease gate stays).
    fn restart(&mut self, limit: RateLimit, window_start: DateTime<Utc>, now: DateTime<Utc>) {
        *self = Self {
            leasing: self.leasing.clone(),
            ..Self::new(limit, window_start, now)
        };
    }

    /// Takes a use from the lease, or refuses while the store has none to grant; `None` when
    /// a lease must be asked for.
    fn draw(&mut self, now: DateTime<Utc>) -> Option<RateDecision> {
        if self.left > 0 {
            self.left -= 1;
            self.last_draw = now;
            return Some(RateDecision {
                allowed: true,
                state: self.state(now),
            });
        }
        self.exhausted_until
            .is_some_and(|until| now < until)
            .then(|| self.refusal(now))
    }

    fn refusal(&self, now: DateTime<Utc>) -> RateDecision {
        RateDecision {
            allowed: false,
            state: RateLimitState {
                remaining: 0,
                ..self.state(now)
            },
        }
    }

    /// How much to ask for: a quarter of what was left of the window, at least one.
    fn ask(&self) -> u32 {
        self.limit
            .limit()
            .saturating_sub(self.taken)
            .div_ceil(4)
            .max(1)
    }
}

/// The local side of every rate-limited key's window on this instance.
#[derive(Debug, Clone, Default)]
pub struct RateLimiter {
    windows: Arc<Mutex<HashMap<ApiKeyId, Local>>>,
}

/// The verdict of the limiter on one verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the verification may go on.
    pub allowed: bool,
    /// What to report.
    pub state: RateLimitState,
}

impl RateLimiter {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<ApiKeyId, Local>) -> R) -> R {
        f(&mut self.windows.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Takes one use of key `id`'s window at the clock's time, leasing from `store` when the
    /// local lease is empty.
    ///
    /// # Errors
    /// A store failure while leasing (no verdict is made of an outage).
    pub async fn acquire(
        &self,
        store: &dyn ApiKeyRepository,
        id: ApiKeyId,
        limit: RateLimit,
        clock: &dyn Clock,
    ) -> Result<RateDecision, StoreError> {
        // A few rounds, only when a lease arrives for a window this instance has left, or the
        // store grants nothing while another verification's lease arrived here meanwhile.
        for _ in 0..4 {
            let now = clock.now();
            let gate = self.with(|windows| {
                let local = local_window(windows, id, limit, now);
                local.draw(now).ok_or_else(|| local.leasing.clone())
            });
            let gate = match gate {
                Ok(decision) => return Ok(decision),
                Err(gate) => gate,
            };
            let _leasing = gate.lock().await;
            // A lease asked for while this one waited may have arrived.
            let now = clock.now();
            let ask = self.with(|windows| {
                let local = local_window(windows, id, limit, now);
                local.draw(now).ok_or((local.window_start, local.ask()))
            });
            let (window_start, ask) = match ask {
                Ok(decision) => return Ok(decision),
                Err(ask) => ask,
            };
            let lease = store
                .lease(
                    id,
                    LeaseRequest {
                        window_start,
                        window_seconds: limit.window_seconds(),
                        limit: limit.limit(),
                        ask,
                        give_back: 0,
                    },
                )
                .await?;
            let now = clock.now();
            let settled = self.with(|windows| {
                let local = local_window(windows, id, limit, now);
                if lease.window_start > local.window_start {
                    // Another instance's clock is ahead: the store's window is the one.
                    local.restart(limit, lease.window_start, now);
                } else if lease.window_start < local.window_start {
                    // Granted in a window that has ended here: of no use.
                    return None;
                }
                local.taken = local.taken.max(lease.taken);
                local.last_draw = now;
                if lease.granted > 0 {
                    // The verification that asked takes its use first: whatever the others
                    // on this instance draw meanwhile, a grant is never a refusal.
                    local.left += lease.granted - 1;
                    local.exhausted_until = None;
                    return Some(RateDecision {
                        allowed: true,
                        state: local.state(now),
                    });
                }
                if local.left == 0 {
                    local.exhausted_until =
                        Some((now + EXHAUSTED_RECHECK).min(limit.window_end(local.window_start)));
                    return Some(local.refusal(now));
                }
                // Granted nothing, but another verification's lease arrived meanwhile.
                None
            });
            if let Some(decision) = settled {
                return Ok(decision);
            }
        }
        let now = clock.now();
        Ok(RateDecision {
            allowed: false,
            state: RateLimitState {
                limit: limit.limit(),
                remaining: 0,
                reset_seconds: limit.reset_seconds(now),
            },
        })
    }

    /// Gives back to `store` every lease not drawn from for [`idle_give_back`] of its window,
    /// and forgets windows that have ended. Returns how many uses were given back. A
    /// give-back that fails is kept here to be drawn from or given back later; the others go
    /// on.
    ///
    /// # Errors
    /// The first store failure, after every give-back was tried.
    pub async fn reconcile(
        &self,
        store: &dyn ApiKeyRepository,
        now: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        let idle: Vec<(ApiKeyId, DateTime<Utc>, RateLimit, u32)> = self.with(|windows| {
            windows.retain(|_, local| local.limit.window_end(local.window_start) > now);
            windows
                .iter_mut()
                .filter(|(_, local)| {
                    local.left > 0 && now - local.last_draw >= idle_give_back(local.limit)
                })
                .map(|(id, local)| {
                    let unused = std::mem::take(&mut local.left);
                    local.taken = local.taken.saturating_sub(unused);
                    (*id, local.window_start, local.limit, unused)
                })
                .collect()
        });
        let mut given = 0;
        let mut failed = None;
        for (id, window_start, limit, unused) in idle {
            let request = LeaseRequest {
                window_start,
                window_seconds: limit.window_seconds(),
                limit: limit.limit(),
                ask: 0,
                give_back: unused,
            };
            match store.lease(id, request).await {
                Ok(_) => given += unused,
                Err(err) => {
                    // Not given back: still this instance's to use.
                    self.with(|windows| {
                        if let Some(current) = windows.get_mut(&id)
                            && current.window_start == window_start
                            && current.limit == limit
                        {
                            current.left += unused;
                            current.taken += unused;
                        }
                    });
                    failed.get_or_insert(err);
                }
            }
        }
        failed.map_or(Ok(given), Err)
    }

    /// Windows this instance holds (for tests and metrics).
    #[must_use]
    pub fn windows(&self) -> usize {
        self.with(|windows| windows.len())
    }
}

/// Key `id`'s local window for a verification at `now`, made current: a new window (or a
/// new window length) starts afresh; a new limit over the same window keeps what was
/// leased; a window earlier than the local one is the local one (windows never move back).
fn local_window(
    windows: &mut HashMap<ApiKeyId, Local>,
    id: ApiKeyId,
    limit: RateLimit,
    now: DateTime<Utc>,
) -> &mut Local {
    let window_start = limit.window_start(now);
    let local = windows
        .entry(id)
        .or_insert_with(|| Local::new(limit, window_start, now));
    if local.limit.window_seconds() != limit.window_seconds() || window_start > local.window_start {
        *local = Local::new(limit, window_start, now);
    } else if local.limit != limit {
        // A new limit over the same window: what was leased stays, and a refusal made under
        // the old limit is not repeated without asking.
        local.limit = limit;
        local.exhausted_until = None;
    }
    local
}
