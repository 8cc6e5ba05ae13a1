//! Background work that time makes due: expired holds are released, pending points mature,
//! lots and coupons expire, members who stopped visiting get their LAPSED coupons. Each item
//! is its own small unit of work, so the sweeper never holds locks for long and several
//! replicas may sweep at once (each item re-checks under its lock; on PostgreSQL, `due_work`
//! claims the rows it returns, so two sweepers take different rows).
//!
//! The sweeper never stops at a bad row: an item whose unit of work fails (an order whose
//! member is gone, a lot that contradicts the ledger) is logged with its id, counted in the
//! report and skipped, and every other item is still done. It stays due, so every sweep tries
//! it again (and warns again) until someone repairs it.

use std::{collections::HashSet, future::Future, pin::Pin, time::Duration as StdDuration};

use chrono::{DateTime, Days, Duration, DurationRound, Utc};

use super::{Engine, EngineError, checkout, coupons, engagement, points, tiers};
use crate::domain::location::{VisitRule, VisitRuleKind};
use crate::domain::ports::{DueWork, StoreResult, UnitOfWork};
use crate::domain::rules::{Trigger, views};

/// One batch of a purge: the unit of work's method that deletes (or empties) old rows.
type Purge<'a> = Pin<Box<dyn Future<Output = StoreResult<u64>> + Send + 'a>>;

/// Idempotency records kept when no retention is set (`--idempotency-retention-days`).
const DEFAULT_RETENTION_DAYS: u32 = 30;
/// Days location reports and receipts' raw text are kept when none is set (`--retention-days`).
const DEFAULT_PERSONAL_RETENTION_DAYS: u32 = 90;
/// Days delivered events stay in the feed when none is set (`--event-retention-days`).
const DEFAULT_EVENT_RETENTION_DAYS: u32 = 30;
/// Rows deleted (or emptied) per unit of work, and most units of work per sweep and kind:
/// short transactions, and a bounded sweep (a large backlog takes a few sweeps).
const PURGE_BATCH: i64 = 1000;
const MAX_PURGE_BATCHES: usize = 100;

/// Items read per pass; passes repeat until nothing new is due (at most `MAX_PASSES` per
/// sweep, so one sweep always ends).
const BATCH: i64 = 500;
const MAX_PASSES: usize = 200;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub holds_expired: usize,
    pub members_settled: usize,
    pub coupons_expired: usize,
    /// Coupons of LAPSED visit rules.
    pub lapsed_coupons: usize,
    /// Items whose unit of work failed: logged with their id and skipped.
    pub failed: usize,
    /// Idempotency records deleted because they outlived the retention window.
    pub idempotency_purged: u64,
    /// Location reports deleted because they outlived `--retention-days`.
    pub location_reports_purged: u64,
    /// Receipts whose raw text was emptied because they outlived `--retention-days`.
    pub receipt_texts_cleared: u64,
    /// Events deleted from the feed because every webhook had them and they outlived
    /// `--event-retention-days`.
    pub events_purged: u64,
    /// Report summary rows the hourly compaction wrote (folded from its window's rows).
    pub summary_rows_folded: u64,
    /// `points.expiring` (one per lot, `Program.expiry_reminder_days` ahead) and
    /// `coupon.expiring` (one per coupon, a day ahead) reminders written.
    pub expiry_reminders: usize,
    /// Members whose tier the monthly review moved (`domain::tier`).
    pub tiers_reviewed: usize,
}

/// The clock hour a once-an-hour part of the sweep (the LAPSED check, the compaction) last
/// ran in.
#[derive(Debug, Default)]
pub(super) struct HourGate(std::sync::Mutex<Option<DateTime<Utc>>>);

impl HourGate {
    /// The hour `now` is in, unless the job has run in it.
    fn due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let hour = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
        (*self.0.lock().expect("hour gate poisoned") != Some(hour)).then_some(hour)
    }

    fn ran(&self, hour: DateTime<Utc>) {
        *self.0.lock().expect("hour gate poisoned") = Some(hour);
    }
}

/// Items this sweep has handled (done or failed): a pass skips them, so neither a failing
/// item nor one that turned out to need nothing is tried twice in one sweep.
#[derive(Default)]
struct Handled {
    holds: HashSet<String>,
    members: HashSet<String>,
    coupons: HashSet<String>,
}

impl Handled {
    /// The part of `due` not handled yet, now marked handled.
    fn take_new(&mut self, due: DueWork) -> DueWork {
        let new = |ids: Vec<String>, seen: &mut HashSet<String>| -> Vec<String> {
            ids.into_iter()
                .filter(|id| seen.insert(id.clone()))
                .collect()
        };
        DueWork {
            expired_holds: new(due.expired_holds, &mut self.holds),
            members_with_due_lots: new(due.members_with_due_lots, &mut self.members),
            expired_coupons: new(due.expired_coupons, &mut self.coupons),
        }
    }
}

impl Engine {
    /// Does everything due as of the clock's now; fails only when the database cannot be read
    /// at all (one item's failure is counted in the report instead).
    pub async fn sweep(&self) -> Result<SweepReport, EngineError> {
        let mut report = self.sweep_due().await?;
        self.sweep_lapsed(&mut report).await?;
        Ok(report)
    }

    async fn sweep_due(&self) -> Result<SweepReport, EngineError> {
        let mut report = SweepReport::default();
        let mut handled = Handled::default();
        for _ in 0..MAX_PASSES {
            let mut read = self.store().begin_read().await?;
            let due = handled.take_new(read.due_work(self.now(), BATCH).await?);
            // Where due_work claims its rows, the claim lasts while this pass works on them;
            // elsewhere the read ends here (SQLite's in-memory reads share the writer).
            let claim = self.store().due_work_claims_rows().then_some(read);
            if due == DueWork::default() {
                break;
            }
            self.expire_holds(due.expired_holds, &mut report).await;
            self.settle_members(due.members_with_due_lots, &mut report)
                .await;
            self.expire_coupons(due.expired_coupons, &mut report).await;
            // Ends the claim: other sweepers may take these rows now (they are done).
            drop(claim);
        }
        self.remind_expiring(&mut report).await;
        self.review_tiers(&mut report).await?;
        self.purge_idempotency(&mut report).await;
        self.purge_personal_data(&mut report).await;
        self.purge_events(&mut report).await;
        self.compact_summaries(&mut report).await;
        Ok(report)
    }

    /// Once an hour, folds the report summaries of the week before yesterday into one row per
    /// key (`UnitOfWork::compact_report_sums`): every writer adds its own rows (its shard), and
    /// the rows of spent lots net to zero, so settled days would otherwise keep them all and
    /// the reports would read them all. Yesterday and today are left to the writers; a late
    /// row (a register replaying an old sale) is folded the next hour. The summaries are
    /// locked meanwhile (writers wait at their summary upserts, a few milliseconds).
    async fn compact_summaries(&self, report: &mut SweepReport) {
        let Some(hour) = self.summaries_compacted.due(self.now()) else {
            return;
        };
        let started = std::time::Instant::now();
        let folded = async {
            let mut uow = self.store().begin().await?;
            uow.lock_report_sums().await?;
            let written = uow
                .compact_report_sums(hour - Duration::days(8), hour - Duration::days(1))
                .await?;
            uow.commit().await?;
            Ok::<_, EngineError>(written)
        }
        .await;
        match folded {
            Ok(written) => {
                let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                tracing::info!(rows = written, elapsed_ms, "report summaries compacted");
                report.summary_rows_folded = written;
                self.summaries_compacted.ran(hour);
            }
            Err(error) => {
                tracing::warn!(%error, "sweep: cannot compact the report summaries; later");
                report.failed += 1;
            }
        }
    }

    /// Sets how many days idempotency records are kept (once, at start); 0 keeps them for ever.
    pub fn set_idempotency_retention_days(&self, days: u32) {
        let retention = (days > 0).then(|| Duration::days(i64::from(days)));
        let _ = self.idempotency_retention.set(retention);
    }

    fn idempotency_retention(&self) -> Option<Duration> {
        *self
            .idempotency_retention
            .get_or_init(|| Some(Duration::days(i64::from(DEFAULT_RETENTION_DAYS))))
    }

    /// Deletes the idempotency records older than the retention window, by the injected clock,
    /// in short batches; a failure is logged and left to the next sweep.
    async fn purge_idempotency(&self, report: &mut SweepReport) {
        let Some(retention) = self.idempotency_retention() else {
            return;
        };
        let created_before = self.now() - retention;
        report.idempotency_purged += self
            .purge_in_batches("idempotency records", report, |uow| {
                uow.purge_idempotency(created_before, PURGE_BATCH)
            })
            .await;
    }

    /// Sets how many days location reports and receipts' raw text are kept (once, at start);
    /// 0 keeps them for ever.
    pub fn set_retention_days(&self, days: u32) {
        let retention = (days > 0).then(|| Duration::days(i64::from(days)));
        let _ = self.retention.set(retention);
    }

    /// Deletes the location reports and empties the raw text of the receipts older than the
    /// retention window, by the injected clock: where a member was and what their receipts
    /// said is personal data no feature reads after the fact (a location report's verdict is
    /// in its visits and coupons, a receipt's points in the ledger).
    async fn purge_personal_data(&self, report: &mut SweepReport) {
        let retention = *self
            .retention
            .get_or_init(|| Some(Duration::days(i64::from(DEFAULT_PERSONAL_RETENTION_DAYS))));
        let Some(retention) = retention else {
            return;
        };
        let before = self.now() - retention;
        report.location_reports_purged += self
            .purge_in_batches("location reports", report, |uow| {
                uow.purge_location_reports(before, PURGE_BATCH)
            })
            .await;
        report.receipt_texts_cleared += self
            .purge_in_batches("receipt texts", report, |uow| {
                uow.clear_receipt_texts(before, PURGE_BATCH)
            })
            .await;
    }

    /// Sets how many days delivered events stay in the feed (once, at start); 0 keeps them.
    pub fn set_event_retention_days(&self, days: u32) {
        let retention = (days > 0).then(|| Duration::days(i64::from(days)));
        let _ = self.event_retention.set(retention);
    }

    /// Deletes the oldest events of the feed once they outlived the retention window (by the
    /// injected clock) and every webhook has been given them: a reader resuming from an old
    /// seq then starts at the oldest kept event.
    async fn purge_events(&self, report: &mut SweepReport) {
        let retention = *self
            .event_retention
            .get_or_init(|| Some(Duration::days(i64::from(DEFAULT_EVENT_RETENTION_DAYS))));
        let Some(retention) = retention else {
            return;
        };
        let before = self.now() - retention;
        report.events_purged += self
            .purge_in_batches("events", report, |uow| {
                uow.purge_events(before, PURGE_BATCH)
            })
            .await;
    }

    /// Runs `purge` (at most `PURGE_BATCH` rows) in units of work of its own until it finds
    /// fewer, at most `MAX_PURGE_BATCHES` times; how many rows it did. A failure is logged,
    /// counted and left to the next sweep.
    async fn purge_in_batches<F>(&self, what: &str, report: &mut SweepReport, purge: F) -> u64
    where
        F: for<'a> Fn(&'a mut dyn UnitOfWork) -> Purge<'a>,
    {
        let mut done = 0;
        for _ in 0..MAX_PURGE_BATCHES {
            let purged = async {
                let mut uow = self.store().begin().await?;
                let rows = purge(uow.as_mut()).await?;
                uow.commit().await?;
                Ok::<_, EngineError>(rows)
            }
            .await;
            match purged {
                Ok(rows) => {
                    done += rows;
                    if rows < PURGE_BATCH as u64 {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, what, "sweep: cannot purge old rows; later");
                    report.failed += 1;
                    break;
                }
            }
        }
        done
    }

    async fn expire_holds(&self, order_ids: Vec<String>, report: &mut SweepReport) {
        for order_id in order_ids {
            let result = self
                .core
                .write(|uow, now| {
                    let order_id = order_id.clone();
                    Box::pin(
                        async move { Ok(checkout::expire_hold_if_due(uow, &order_id, now).await?) },
                    )
                })
                .await;
            match result {
                Ok(done) => {
                    report.holds_expired += usize::from(done);
                    crate::metrics::holds_expired(usize::from(done));
                }
                Err(error) => {
                    tracing::warn!(%error, %order_id, "sweep: cannot expire this hold; skipped");
                    report.failed += 1;
                }
            }
        }
    }

    async fn settle_members(&self, member_ids: Vec<String>, report: &mut SweepReport) {
        for member_id in member_ids {
            let result = self
                .core
                .write(|uow, now| {
                    let member_id = member_id.clone();
                    Box::pin(async move {
                        Ok(points::settle_locked_member(uow, &member_id, now).await?)
                    })
                })
                .await;
            match result {
                Ok(()) => report.members_settled += 1,
                Err(error) => {
                    tracing::warn!(%error, %member_id, "sweep: cannot settle this member's lots; skipped");
                    report.failed += 1;
                }
            }
        }
    }

    /// `points.expiring` (each live lot expiring within the program's reminder days) and
    /// `coupon.expiring` (each active coupon ending within a day), written into the outbox by
    /// a unit of work of their own. The outbox keeps one per lot and coupon (their dedupe
    /// keys), so sweepers of several replicas, or a sweep that runs again after a broken
    /// commit, never announce one twice.
    async fn remind_expiring(&self, report: &mut SweepReport) {
        use crate::domain::event::{COUPON_REMINDER_HOURS, coupon_expiring, points_expiring};
        let result = async {
            let mut read = self.store().begin_read().await?;
            let program = self.core.reference.program(read.as_mut()).await?;
            let now = self.now();
            let lots = if program.expiry_reminder_days > 0 {
                let until = now + Duration::days(program.expiry_reminder_days.into());
                read.expiring_lots(now, until, BATCH).await?
            } else {
                Vec::new()
            };
            let until = now + Duration::hours(COUPON_REMINDER_HOURS);
            let coupons = read.expiring_coupons(now, until, BATCH).await?;
            drop(read);
            let count = lots.len() + coupons.len();
            if count == 0 {
                return Ok::<usize, EngineError>(0);
            }
            self.core
                .write(move |uow, now| {
                    for lot in &lots {
                        let (member_id, points) = (&lot.member_id, lot.points);
                        let event =
                            points_expiring(member_id, lot.lot_id, points, lot.expires_at, now);
                        uow.push_event(event);
                    }
                    for coupon in &coupons {
                        uow.push_event(coupon_expiring(coupon, now));
                    }
                    Box::pin(async { Ok(()) })
                })
                .await?;
            Ok(count)
        }
        .await;
        match result {
            Ok(count) => report.expiry_reminders += count,
            Err(error) => {
                tracing::warn!(%error, "sweep: expiry reminders failed; tried again next sweep");
                report.failed += 1;
            }
        }
    }

    async fn expire_coupons(&self, codes: Vec<String>, report: &mut SweepReport) {
        for code in codes {
            let result = self
                .core
                .write(|uow, now| {
                    let code = code.clone();
                    Box::pin(async move { Ok(coupons::expire_if_due(uow, &code, now).await?) })
                })
                .await;
            match result {
                Ok(done) => report.coupons_expired += usize::from(done),
                Err(error) => {
                    tracing::warn!(%error, %code, "sweep: cannot expire this coupon; skipped");
                    report.failed += 1;
                }
            }
        }
    }

    /// LAPSED rules, checked once an hour of the clock (so within the hour after each store's
    /// local midnight: a rule counts days in its stores' zones). Several replicas may check at
    /// once: each coupon is re-decided under the member's lock and unique per (rule, member,
    /// date). A member whose coupon fails is logged, counted and skipped like any sweep item,
    /// and tried again the next hour; a rule whose candidates cannot be read is left for the
    /// next sweep.
    async fn sweep_lapsed(&self, report: &mut SweepReport) -> Result<(), EngineError> {
        let Some(hour) = self.lapsed_checked.due(self.now()) else {
            return Ok(());
        };
        let rules = {
            let mut uow = self.store().begin_read().await?;
            let visit = self
                .core
                .reference
                .enabled_rules(uow.as_mut(), Trigger::Visit);
            let rules = visit.await?;
            rules.iter().filter_map(views::to_visit).collect::<Vec<_>>()
        };
        let mut all_read = true;
        for rule in rules.iter().filter(|r| r.kind == VisitRuleKind::Lapsed) {
            if let Err(error) = self.sweep_lapsed_rule(rule, hour, report).await {
                let rule_id = &rule.rule_id;
                tracing::warn!(%error, %rule_id, "sweep: cannot read this LAPSED rule's members; later");
                report.failed += 1;
                all_read = false;
            }
        }
        if all_read {
            self.lapsed_checked.ran(hour);
        }
        Ok(())
    }

    /// Issues rule's coupons to the members due one; fails only when its candidates cannot be
    /// read.
    async fn sweep_lapsed_rule(
        &self,
        rule: &VisitRule,
        now: DateTime<Utc>,
        report: &mut SweepReport,
    ) -> Result<(), EngineError> {
        // Loose by a day: no zone's date is more than a day ahead of UTC's; each candidate is
        // then checked exactly in its store's zone.
        let days = u64::try_from(rule.lapsed_days - 1).unwrap_or(0);
        let Some(last_visit_by) = now.date_naive().checked_sub_days(Days::new(days)) else {
            return Ok(());
        };
        let mut after = String::new();
        loop {
            let members = self
                .store()
                .begin_read()
                .await?
                .lapsed_candidates(&rule.rule_id, &rule.store_ids, last_visit_by, &after, BATCH)
                .await?;
            let Some(last) = members.last() else {
                return Ok(());
            };
            after = last.clone();
            for member_id in members {
                match self.issue_lapsed(&rule.rule_id, &member_id).await {
                    Ok(done) => report.lapsed_coupons += usize::from(done),
                    Err(error) => {
                        let rule_id = &rule.rule_id;
                        tracing::warn!(%error, %rule_id, %member_id, "sweep: cannot issue this LAPSED coupon; skipped");
                        report.failed += 1;
                    }
                }
            }
        }
    }

    /// The monthly tier review (the 1st, program time zone, on the injected clock): every
    /// member with a tier not decided since this month's review instant is reviewed in a unit
    /// of work of its own, which re-reads the member under its lock and leaves one reviewed
    /// already (by another replica, or a raise) as it is.
    async fn review_tiers(&self, report: &mut SweepReport) -> Result<(), EngineError> {
        let now = self.now();
        let program = {
            let mut read = self.store().begin_read().await?;
            self.core.reference.program(read.as_mut()).await?
        };
        // Without tiers (all removed), members who still hold one are reviewed down to none.
        let review = crate::domain::tier::last_review(now, tiers::zone(&program));
        let mut after = String::new();
        for _ in 0..MAX_PASSES {
            let member_ids = {
                let mut read = self.store().begin_read().await?;
                read.members_due_tier_review(review, &after, BATCH).await?
            };
            let Some(last) = member_ids.last() else {
                break;
            };
            after = last.clone();
            for member_id in member_ids {
                let reference = self.core.reference.clone();
                let id = member_id.clone();
                let result = self
                    .core
                    .write(move |uow, now| {
                        let member_id = member_id.clone();
                        let reference = reference.clone();
                        Box::pin(async move {
                            let program = reference.program(uow).await?;
                            let Some(mut member) = uow.get_member(&member_id, true).await? else {
                                return Ok(false);
                            };
                            let moved = tiers::review(uow, &program, &mut member, now).await?;
                            uow.update_member(&member).await?;
                            Ok(moved)
                        })
                    })
                    .await;
                match result {
                    Ok(true) => report.tiers_reviewed += 1,
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, member_id = %id, "sweep: cannot review this member's tier; skipped");
                        report.failed += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// One member's LAPSED coupon of a rule, if due: its own unit of work.
    async fn issue_lapsed(&self, rule_id: &str, member_id: &str) -> Result<bool, EngineError> {
        let reference = self.core.reference.clone();
        self.core
            .write(move |uow, now| {
                let (rule_id, member_id) = (rule_id.to_string(), member_id.to_string());
                let reference = reference.clone();
                Box::pin(async move {
                    Ok(
                        engagement::issue_lapsed_if_due(uow, &reference, &rule_id, &member_id, now)
                            .await?,
                    )
                })
            })
            .await
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
