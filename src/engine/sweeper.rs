//! Background work that time makes due: expired holds are released, pending points mature,
//! lots and coupons expire, members who stopped visiting get their LAPSED coupons. Each item is its own small unit of work, so the sweeper never holds
//! locks for long and several replicas may sweep at once (each item re-checks under its lock).

use std::time::Duration as StdDuration;

use chrono::{DateTime, Days, DurationRound, Utc};

use super::{Engine, EngineError, checkout, coupons, engagement, points};
use crate::domain::location::{VisitRule, VisitRuleKind};

/// Items read per pass; passes repeat until nothing is due (at most `MAX_PASSES` per sweep,
/// so one sweep always ends).
const BATCH: i64 = 500;
const MAX_PASSES: usize = 200;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub holds_expired: usize,
    pub members_settled: usize,
    pub coupons_expired: usize,
    /// Coupons of LAPSED visit rules.
    pub lapsed_coupons: usize,
}

impl Engine {
    /// Does everything due as of the clock's now.
    pub async fn sweep(&self) -> Result<SweepReport, EngineError> {
        let mut report = self.sweep_due().await?;
        report.lapsed_coupons = self.sweep_lapsed().await?;
        Ok(report)
    }

    async fn sweep_due(&self) -> Result<SweepReport, EngineError> {
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

    /// LAPSED rules, checked once an hour of the clock (so within the hour after each store's
    /// local midnight: a rule counts days in its stores' zones). Several replicas may check at
    /// once: each coupon is re-decided under the member's lock and unique per (rule, member,
    /// date). Returns how many coupons were issued.
    async fn sweep_lapsed(&self) -> Result<usize, EngineError> {
        let hour = self
            .now()
            .duration_trunc(chrono::Duration::hours(1))
            .unwrap_or_else(|_| self.now());
        if *self.lapsed_checked.lock().expect("lapsed gate poisoned") == Some(hour) {
            return Ok(0);
        }
        let rules = {
            let mut uow = self.store().begin_read().await?;
            self.core.reference.visit_rules(uow.as_mut()).await?
        };
        let mut issued = 0;
        for rule in rules.iter().filter(|r| r.kind == VisitRuleKind::Lapsed) {
            issued += self.sweep_lapsed_rule(rule, hour).await?;
        }
        *self.lapsed_checked.lock().expect("lapsed gate poisoned") = Some(hour);
        Ok(issued)
    }

    async fn sweep_lapsed_rule(
        &self,
        rule: &VisitRule,
        now: DateTime<Utc>,
    ) -> Result<usize, EngineError> {
        // Loose by a day: no zone's date is more than a day ahead of UTC's; each candidate is
        // then checked exactly in its store's zone.
        let days = u64::try_from(rule.lapsed_days - 1).unwrap_or(0);
        let Some(last_visit_by) = now.date_naive().checked_sub_days(Days::new(days)) else {
            return Ok(0);
        };
        let (mut after, mut issued) = (String::new(), 0);
        loop {
            let members = self
                .store()
                .begin_read()
                .await?
                .lapsed_candidates(&rule.rule_id, &rule.store_ids, last_visit_by, &after, BATCH)
                .await?;
            let Some(last) = members.last() else {
                return Ok(issued);
            };
            after = last.clone();
            for member_id in members {
                let rule_id = rule.rule_id.clone();
                let reference = self.core.reference.clone();
                let done = self
                    .core
                    .write(move |uow, now| {
                        let (rule_id, member_id) = (rule_id.clone(), member_id.clone());
                        let reference = reference.clone();
                        Box::pin(async move {
                            Ok(engagement::issue_lapsed_if_due(
                                uow, &reference, &rule_id, &member_id, now,
                            )
                            .await?)
                        })
                    })
                    .await?;
                issued += usize::from(done);
            }
        }
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
