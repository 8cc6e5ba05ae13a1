//! Events in and out (issue #22). In: TrackEvent, a member's behaviour event, decided against
//! the EVENT rules inside the batch exactly as a capture decides its PURCHASE rules
//! (`rules::decide_event`, `rules::book`). Out: the event feed — the outbox rows every flush
//! writes (`domain::event::events_of`) get their public seq from the relay here, and readers
//! (ListEvents, WatchEvents) read numbered rows only.
//!
//! The relay: after each commit that wrote events the writer wakes it (`Core::events_written`),
//! and it also ticks on its own, for rows another replica wrote. On PostgreSQL one relay at a
//! time across replicas numbers the committed rows (see `store/postgres/events.rs` for why);
//! on SQLite the flush numbers them as it inserts (one writer). Either way the relay then
//! publishes the highest seq, which wakes the watchers of this replica.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};

use super::{
    CommandResult, Engine, EngineError,
    members::{self, Access},
    points,
    reference::{Reference, Sites},
    rows::LedgerRows,
    rules::{self, TrackedFacts},
};
use crate::domain::{
    DomainError, Money,
    auth::{Caller, Operation},
    command::{EventCommand, Reply},
    event::{self, Event, EventFilter, RuleFired, TrackResult, TrackedEvent},
    ids,
    location::GeoRule,
    model::{Channel, LatLng},
    ports::{NewTransaction, StoreError},
    schedule::local_date,
};

/// How far in the future a tracked event's `occurred_at` may be (clock skew of the app).
const MAX_CLOCK_SKEW_SECONDS: i64 = 300;
/// Rows the relay numbers in one transaction.
const RELAY_PAGE: i64 = 10_000;

impl EventCommand {
    pub(super) fn plan(&self, plan: &mut super::batch::Plan) {
        let EventCommand::TrackEvent(tracked) = self;
        plan.member(&tracked.member);
        plan.wants(1, 1);
    }

    pub(super) async fn run(
        &self,
        uow: &mut dyn LedgerRows,
        reference: &Reference,
        caller: &Caller,
        now: DateTime<Utc>,
    ) -> CommandResult<Reply> {
        caller.require(Operation::TrackEvent)?;
        let EventCommand::TrackEvent(tracked) = self;
        track(uow, reference, now, tracked)
            .await
            .map(Reply::Tracked)
    }
}

/// TrackEvent: the EVENT rules of the event's type decided and booked in one journal entry
/// (their points from the rules' accounts, their coupons); the entry's events report them.
async fn track(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    now: DateTime<Utc>,
    tracked: &TrackedEvent,
) -> CommandResult<TrackResult> {
    let at = tracked.occurred_at.unwrap_or(now);
    if at > now + Duration::seconds(MAX_CLOCK_SKEW_SECONDS) {
        return Err(DomainError::invalid("occurred_at", "is in the future").into());
    }
    let mut member = members::resolve(uow, &tracked.member, Access::Mutate).await?;
    let program = reference.program(uow).await?;
    let event_id = ids::new_event_id();
    // Behaviour earns no base points and has no basket: the rules give what they give.
    let channel = tracked.channel.unwrap_or(Channel::App);
    let purchase = rules::Purchase {
        member_id: &member.member_id,
        channel,
        store_id: &tracked.store_id,
        lines: &[],
        total: Money::ZERO,
        paid: Money::ZERO,
        at,
    };
    let facts = TrackedFacts {
        event_type: &tracked.event_type,
        attributes: &tracked.attributes,
        channel: tracked.channel,
    };
    let decided = rules::decide_event(uow, reference, &program, &purchase, &facts).await?;
    let booked = rules::book(uow, &purchase, &decided, 0, now).await?;
    let rules_fired = booked
        .fired
        .iter()
        .map(|(rule_id, points, codes)| RuleFired {
            rule_id: rule_id.clone(),
            points_awarded: *points,
            coupons_issued: codes.clone(),
        })
        .collect();
    let owner = (member.member_id.as_str(), "", Channel::App);
    let (mut postings, _) = points::earn_parts(uow, &program, owner, &booked.earnings, now).await?;
    postings.extend(booked.coupon_postings);
    if !postings.is_empty() {
        let mut entry = points::system_entry("event", &member.member_id, now, postings);
        entry.occurred_at = at;
        entry.store_id.clone_from(&tracked.store_id);
        entry.channel = tracked.channel;
        entry.metadata = vec![
            ("event_id".into(), event_id.clone()),
            ("event_type".into(), tracked.event_type.clone()),
        ];
        append(uow, &entry).await?;
        let earned: i64 = booked.fired.iter().map(|(_, points, _)| points).sum();
        if earned > 0 {
            member.lifetime_earned_points += earned;
            uow.update_member(&member).await?;
        }
    }
    Ok(TrackResult {
        event_id,
        rules_fired,
    })
}

/// `offer.nearby` for an accepted location: each store within `Program.nearby_offer_radius_m`
/// with a coupon on offer there (an enabled GEO rule covering it, open now, whose campaign is
/// open), at most once per member, store and the store's local day (the outbox keeps one
/// event per such key, whatever the number of reports or replicas).
pub(super) async fn offer_nearby(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    (sites, rules): (&Sites, &[GeoRule]),
    (member_id, position): (&str, LatLng),
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let program = reference.program(uow).await?;
    if program.nearby_offer_radius_m <= 0 || rules.is_empty() {
        return Ok(());
    }
    let campaigns = reference.campaigns(uow).await?;
    let radius_m = f64::from(program.nearby_offer_radius_m);
    for (site, distance_m) in sites.within(position, radius_m) {
        let on_offer = rules.iter().find(|rule| {
            super::engagement::rule_open(rule, site, now)
                && campaigns
                    .iter()
                    .any(|c| c.campaign_id == rule.campaign_id && c.is_open(now))
        });
        if let Some(rule) = on_offer {
            let day = local_date(now, site.tz);
            let store_id = &site.store.store_id;
            let event =
                event::offer_nearby(member_id, store_id, &rule.campaign_id, distance_m, now)
                    .once(event::offer_nearby_key(member_id, store_id, day));
            uow.push_event(event);
        }
    }
    Ok(())
}

async fn append(uow: &mut dyn LedgerRows, entry: &NewTransaction) -> CommandResult<()> {
    uow.append_transaction(entry).await?;
    Ok(())
}

impl Engine {
    /// One step of the relay: numbers what is committed and unnumbered (a page at a time until
    /// none is left), then publishes the highest seq to this replica's watchers.
    pub async fn relay_events(&self) -> Result<i64, EngineError> {
        let store = self.store();
        loop {
            let before = *self.events_seq.borrow();
            let last = if store.numbers_events_at_insert() {
                let mut uow = store.begin_read_statement().await?;
                uow.number_events(RELAY_PAGE).await?
            } else {
                let mut uow = store.begin().await?;
                let last = uow.number_events(RELAY_PAGE).await?;
                uow.commit().await?;
                last
            };
            self.events_seq.send_if_modified(|seq| {
                let changed = last > *seq;
                *seq = (*seq).max(last);
                changed
            });
            if last - before < RELAY_PAGE {
                return Ok(last);
            }
        }
    }

    /// The relay, until the task is aborted: woken by this replica's commits, and every
    /// `interval` for the others'.
    pub async fn run_event_relay(&self, interval: StdDuration) {
        loop {
            if let Err(error) = self.relay_events().await {
                tracing::error!(%error, "numbering events failed");
            }
            let _ = tokio::time::timeout(interval, self.core.events_written.notified()).await;
        }
    }

    /// Numbered events matching `filter` (ListEvents, and WatchEvents' pages).
    pub async fn list_events(&self, filter: &EventFilter) -> Result<Vec<Event>, EngineError> {
        let mut uow = self.store().begin_read_statement().await?;
        Ok(uow.list_events(filter).await?)
    }

    /// The highest seq numbered, as this replica's relay last saw it; changes wake a watcher.
    pub fn watch_event_seq(&self) -> tokio::sync::watch::Receiver<i64> {
        self.events_seq.subscribe()
    }
}
