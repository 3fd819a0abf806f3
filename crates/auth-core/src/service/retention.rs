//! `RetentionService`: one retention pass over a [`Pruner`] at the domain clock's time, with
//! its metrics. Scheduling the passes is the binary's business (the core has no timer).

use std::sync::Arc;
use std::time::Instant;

use crate::ports::{Clock, PruneError, PruneReport, PrunedRows, Pruner, RetentionPolicy};

/// Runs retention passes and records what each did:
/// - `auth_prune_runs_total{outcome}`: passes by outcome (`completed`, `skipped` because
///   another pass held the lock, `failed`);
/// - `auth_prune_deleted_total{table}`: rows deleted, also by a pass that failed part-way;
/// - `auth_prune_duration_seconds`: how long each pass that ran took;
/// - `auth_prune_last_run_timestamp_seconds`: when this instance last completed a pass.
#[derive(Clone)]
pub struct RetentionService {
    pruner: Arc<dyn Pruner>,
    clock: Arc<dyn Clock>,
    policy: RetentionPolicy,
}

impl std::fmt::Debug for RetentionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetentionService")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn count_deleted(rows: &PrunedRows) {
    for (table, n) in rows.by_table() {
        // Incremented by 0 too, so every table's series exists from the first pass.
        metrics::counter!("auth_prune_deleted_total", "table" => table).increment(n);
    }
}

impl RetentionService {
    /// Passes of `pruner` under `policy`, at `clock`'s time.
    #[must_use]
    pub fn new(pruner: Arc<dyn Pruner>, clock: Arc<dyn Clock>, policy: RetentionPolicy) -> Self {
        Self {
            pruner,
            clock,
            policy,
        }
    }

    /// The policy in force.
    #[must_use]
    pub fn policy(&self) -> &RetentionPolicy {
        &self.policy
    }

    /// Runs one pass now.
    ///
    /// # Errors
    /// [`PruneError`] when the store fails; what was deleted before stays deleted, and is
    /// counted.
    pub async fn run_once(&self) -> Result<PruneReport, PruneError> {
        let started = Instant::now();
        let result = self.pruner.prune(&self.policy, self.clock.now()).await;
        let elapsed = started.elapsed();
        match &result {
            Ok(PruneReport::Completed(rows)) => {
                count_deleted(rows);
                metrics::counter!("auth_prune_runs_total", "outcome" => "completed").increment(1);
                metrics::histogram!("auth_prune_duration_seconds").record(elapsed);
                #[expect(
                    clippy::cast_precision_loss,
                    reason = "microseconds since 1970 fit an f64 exactly until 2255"
                )]
                let at = self.clock.now().timestamp_micros() as f64 / 1e6;
                metrics::gauge!("auth_prune_last_run_timestamp_seconds").set(at);
                tracing::info!(
                    sessions = rows.sessions,
                    refresh_tokens = rows.refresh_tokens,
                    login_attempts = rows.login_attempts,
                    events = rows.events,
                    elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                    "retention pass done"
                );
            }
            Ok(PruneReport::Skipped) => {
                metrics::counter!("auth_prune_runs_total", "outcome" => "skipped").increment(1);
                tracing::debug!("retention pass skipped: another pass holds the lock");
            }
            Err(err) => {
                count_deleted(&err.deleted);
                metrics::counter!("auth_prune_runs_total", "outcome" => "failed").increment(1);
                metrics::histogram!("auth_prune_duration_seconds").record(elapsed);
            }
        }
        result
    }
}
