//! Background work that time makes due: expired holds are released, pending points mature,
//! lots and coupons expire. Each item is its own small unit of work, so the sweeper never holds
//! locks for long and several replicas may sweep at once (each item re-checks under its lock).

use std::time::Duration as StdDuration;

use super::{Engine, EngineError, checkout, coupons, points};

/// Items read per pass; passes repeat until nothing is due (at most `MAX_PASSES` per sweep,
/// so one sweep always ends).
const BATCH: i64 = 500;
const MAX_PASSES: usize = 200;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub holds_expired: usize,
    pub members_settled: usize,
    pub coupons_expired: usize,
}

impl Engine {
    /// Does everything due as of the clock's now.
    pub async fn sweep(&self) -> Result<SweepReport, EngineError> {
        let mut report = SweepReport::default();
        for _ in 0..MAX_PASSES {
            let now = self.now();
            let due = self
                .store()
                .begin_read()
                .await?
                .due_work(now, BATCH)
                .await?;
            if due.expired_holds.is_empty()
                && due.members_with_due_lots.is_empty()
                && due.expired_coupons.is_empty()
            {
                return Ok(report);
            }
            let mut progressed = false;
            for order_id in due.expired_holds {
                let done = self
                    .core
                    .write(move |uow, now| {
                        let order_id = order_id.clone();
                        Box::pin(async move {
                            Ok(checkout::expire_hold_if_due(uow, &order_id, now).await?)
                        })
                    })
                    .await?;
                report.holds_expired += usize::from(done);
                progressed |= done;
            }
            for member_id in due.members_with_due_lots {
                self.core
                    .write(move |uow, now| {
                        let member_id = member_id.clone();
                        Box::pin(async move {
                            Ok(points::settle_locked_member(uow, &member_id, now).await?)
                        })
                    })
                    .await?;
                report.members_settled += 1;
                progressed = true;
            }
            for code in due.expired_coupons {
                let done = self
                    .core
                    .write(move |uow, now| {
                        let code = code.clone();
                        Box::pin(async move { Ok(coupons::expire_if_due(uow, &code, now).await?) })
                    })
                    .await?;
                report.coupons_expired += usize::from(done);
                progressed |= done;
            }
            if !progressed {
                return Ok(report);
            }
        }
        Ok(report)
    }

    /// Sweeps every `interval` until the task is dropped; errors are logged, never fatal.
    pub async fn run_sweeper(&self, interval: StdDuration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match self.sweep().await {
                Ok(report) if report != SweepReport::default() => {
                    tracing::info!(?report, "sweep");
                }
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "sweep failed"),
            }
        }
    }
}
