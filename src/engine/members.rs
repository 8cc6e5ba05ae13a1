//! Members: creation, identifiers, and merging two members inside the ledger.

use super::rows::LedgerRows;
use crate::domain::ports::LedgerReads;
use chrono::{DateTime, Utc};

use super::{CommandResult, points};
use crate::domain::{
    Account, Asset, DomainError, ids,
    model::{Identifier, Member, MemberRef, MemberRow, MemberState, Posting},
    ports::{NewTransaction, StoreError},
};

/// How a command uses the member it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// Reads see a merged member as it is.
    Read,
    /// Mutations lock the member row and refuse a merged member.
    Mutate,
}

/// Finds the member a reference names.
pub(super) async fn resolve(
    uow: &mut dyn LedgerReads,
    member: &MemberRef,
    access: Access,
) -> CommandResult<MemberRow> {
    let row = match member {
        MemberRef::Id(member_id) => uow
            .get_member(member_id, access == Access::Mutate)
            .await?
            .ok_or(DomainError::MemberNotFound)?,
        MemberRef::Identifier(identifier) => by_identifier(uow, identifier, access).await?,
    };
    if access == Access::Mutate && row.state == MemberState::Merged {
        return Err(DomainError::MemberMerged {
            member_id: row.member_id,
            merged_into: row.merged_into.unwrap_or_default(),
        }
        .into());
    }
    if access == Access::Mutate && row.state == MemberState::Erased {
        return Err(DomainError::MemberErased {
            member_id: row.member_id,
        }
        .into());
    }
    Ok(row)
}

/// The member an identifier names. A merge may move the identifier between the lookup and the
/// lock; then the lookup is made again, so an identifier always reaches its current member.
async fn by_identifier(
    uow: &mut dyn LedgerReads,
    identifier: &Identifier,
    access: Access,
) -> CommandResult<MemberRow> {
    for _ in 0..3 {
        let member_id = uow
            .member_by_identifier(identifier)
            .await?
            .ok_or(DomainError::MemberNotFound)?;
        let row = uow
            .get_member(&member_id, access == Access::Mutate)
            .await?
            .ok_or(DomainError::MemberNotFound)?;
        if row.state == MemberState::Active {
            return Ok(row);
        }
    }
    Err(StoreError::Conflict(format!(
        "identifier {}:{} keeps moving",
        identifier.kind, identifier.value
    ))
    .into())
}

/// The member that now owns what `member_id` owned (following merges), locked.
pub(super) async fn current_owner(
    uow: &mut dyn LedgerRows,
    member_id: &str,
) -> CommandResult<MemberRow> {
    let mut member_id = member_id.to_string();
    // Merges form a chain; bound the walk (a limit on everything).
    for _ in 0..32 {
        let row = uow
            .get_member(&member_id, true)
            .await?
            .ok_or(DomainError::MemberNotFound)?;
        match (row.state, &row.merged_into) {
            (MemberState::Merged, Some(next)) => member_id = next.clone(),
            _ => return Ok(row),
        }
    }
    Err(StoreError::Corrupt(format!("merge chain from {member_id} is too long")).into())
}

pub(super) async fn to_member(
    uow: &mut dyn LedgerReads,
    row: MemberRow,
    now: DateTime<Utc>,
) -> Result<Member, StoreError> {
    // A batch reads the program once (it keeps it).
    let program = uow.load_program(false).await?.unwrap_or_default();
    to_member_under(uow, row, now, &program).await
}

/// [`to_member`] under `program` as the caller has it (the read path: the reference cache).
pub(super) async fn to_member_under(
    uow: &mut dyn LedgerReads,
    row: MemberRow,
    now: DateTime<Utc>,
    program: &crate::domain::model::Program,
) -> Result<Member, StoreError> {
    let identifiers = uow.identifiers(&row.member_id).await?;
    // Where the member stands among the tiers, as every reply of a member shows it (none
    // while the program has no tiers: nothing to read then).
    let tier = if program.tiers.is_empty() {
        None
    } else {
        let spend = super::tiers::window_spend(uow, program, &row.member_id, now).await?;
        let tz = super::tiers::zone(program);
        Some(crate::domain::tier::status(
            &program.tiers,
            &row.tier,
            spend,
            now,
            tz,
        ))
    };
    Ok(Member {
        member_id: row.member_id,
        identifiers,
        display_name: row.display_name,
        state: row.state,
        merged_into: row.merged_into,
        created_at: row.created_at,
        attributes: row.attributes,
        tier,
    })
}

pub(super) async fn create(
    uow: &mut dyn LedgerRows,
    now: DateTime<Utc>,
    identifiers: &[Identifier],
    display_name: &str,
) -> CommandResult<Member> {
    for identifier in identifiers {
        ensure_free(uow, identifier).await?;
    }
    let row = MemberRow {
        member_id: ids::new_member_id(),
        display_name: display_name.to_string(),
        state: MemberState::Active,
        merged_into: None,
        created_at: now,
        lifetime_earned_points: 0,
        lifetime_redeemed_points: 0,
        attributes: Default::default(),
        erased_at: None,
        tier: Default::default(),
    };
    uow.insert_member(&row).await?;
    for identifier in identifiers {
        uow.insert_identifier(&row.member_id, identifier).await?;
    }
    Ok(to_member(uow, row, now).await?)
}

async fn ensure_free(uow: &mut dyn LedgerRows, identifier: &Identifier) -> CommandResult<()> {
    if uow.member_by_identifier(identifier).await?.is_some() {
        return Err(DomainError::IdentifierTaken {
            kind: identifier.kind.clone(),
        }
        .into());
    }
    Ok(())
}

pub(super) async fn link(
    uow: &mut dyn LedgerRows,
    now: DateTime<Utc>,
    member: &MemberRef,
    identifier: &Identifier,
) -> CommandResult<Member> {
    let row = resolve(uow, member, Access::Mutate).await?;
    match uow.member_by_identifier(identifier).await? {
        Some(owner) if owner == row.member_id => {}
        Some(_) => ensure_free(uow, identifier).await?,
        None => uow.insert_identifier(&row.member_id, identifier).await?,
    }
    Ok(to_member(uow, row, now).await?)
}

/// UpdateMember: the display name and attributes given replace the stored ones.
pub(super) async fn update(
    uow: &mut dyn LedgerRows,
    now: DateTime<Utc>,
    member: &MemberRef,
    display_name: Option<&String>,
    attributes: Option<&std::collections::BTreeMap<String, String>>,
) -> CommandResult<Member> {
    let mut row = resolve(uow, member, Access::Mutate).await?;
    if let Some(display_name) = display_name {
        row.display_name.clone_from(display_name);
    }
    if let Some(attributes) = attributes {
        row.attributes.clone_from(attributes);
    }
    uow.update_member(&row).await?;
    Ok(to_member(uow, row, now).await?)
}

/// UnlinkIdentifier: the identifier must be the member's; another member's or nobody's is
/// the same INVALID_ARGUMENT, so the answer does not reveal who owns it.
pub(super) async fn unlink(
    uow: &mut dyn LedgerRows,
    now: DateTime<Utc>,
    member: &MemberRef,
    identifier: &Identifier,
) -> CommandResult<Member> {
    let row = resolve(uow, member, Access::Mutate).await?;
    if uow.member_by_identifier(identifier).await?.as_deref() != Some(row.member_id.as_str()) {
        return Err(DomainError::invalid("identifier", "is not linked to this member").into());
    }
    uow.remove_identifier(&row.member_id, identifier).await?;
    Ok(to_member(uow, row, now).await?)
}

/// EraseMember: personal data goes (identifiers, name, attributes, location history,
/// receipts' text); the points left are forfeited to `program:forfeited` and the active
/// coupons revoked, each through the ledger; the member_id stays as the ledger's pseudonym.
/// A member with an open (authorized) order is refused, as a merge is: its hold must resolve.
pub(super) async fn erase(
    uow: &mut dyn LedgerRows,
    now: DateTime<Utc>,
    member: &MemberRef,
) -> CommandResult<Member> {
    let mut row = resolve(uow, member, Access::Mutate).await?;
    if uow.member_has_open_orders(&row.member_id).await? {
        return Err(DomainError::MemberHasOpenOrders.into());
    }
    points::forfeit_all(uow, &row.member_id, now).await?;
    for coupon in uow.member_coupons(&row.member_id).await? {
        if coupon.state == crate::domain::coupon::CouponState::Active {
            super::coupons::revoke_row(uow, now, coupon, "member erased").await?;
        }
    }
    for identifier in uow.identifiers(&row.member_id).await? {
        uow.remove_identifier(&row.member_id, &identifier).await?;
    }
    uow.erase_personal_data(&row.member_id).await?;
    row.display_name.clear();
    row.attributes.clear();
    row.state = MemberState::Erased;
    row.erased_at = Some(now);
    uow.update_member(&row).await?;
    Ok(to_member(uow, row, now).await?)
}

/// Moves everything of `source` to `target` through the ledger: points (each lot keeps its
/// expiry), pending points, coupons, identifiers. The source stays as a MERGED tombstone.
pub(super) async fn merge(
    uow: &mut dyn LedgerRows,
    now: DateTime<Utc>,
    source_member_id: &str,
    target_member_id: &str,
) -> CommandResult<Member> {
    // Lock both members in a fixed (sorted) order so two merges cannot deadlock.
    let (first, second) = if source_member_id < target_member_id {
        (source_member_id, target_member_id)
    } else {
        (target_member_id, source_member_id)
    };
    let first = resolve(uow, &MemberRef::Id(first.to_string()), Access::Mutate).await?;
    let second = resolve(uow, &MemberRef::Id(second.to_string()), Access::Mutate).await?;
    let (mut source, mut target) = if first.member_id == source_member_id {
        (first, second)
    } else {
        (second, first)
    };
    if uow.member_has_open_orders(&source.member_id).await? {
        return Err(DomainError::MemberHasOpenOrders.into());
    }
    points::settle_member(uow, &source.member_id, now).await?;
    points::settle_member(uow, &target.member_id, now).await?;

    let postings = merge_postings(uow, &source.member_id, &target.member_id).await?;
    uow.move_lots(&source.member_id, &target.member_id).await?;
    uow.move_coupons(&source.member_id, &target.member_id)
        .await?;
    uow.move_identifiers(&source.member_id, &target.member_id)
        .await?;
    super::rules::move_counters(uow, &source.member_id, &target.member_id).await?;
    // A merge reports itself whether or not points moved (no journal entry says it otherwise).
    let merged = crate::domain::event::member_merged(&target.member_id, &source.member_id, now);
    uow.push_event(merged);
    if !postings.is_empty() {
        uow.append_transaction(&NewTransaction {
            kind: "merge",
            member_id: target.member_id.clone(),
            occurred_at: now,
            recorded_at: now,
            channel: None,
            store_id: String::new(),
            order_id: String::new(),
            postings,
            metadata: vec![("source_member_id".into(), source.member_id.clone())],
        })
        .await?;
    }
    target.lifetime_earned_points += source.lifetime_earned_points;
    target.lifetime_redeemed_points += source.lifetime_redeemed_points;
    source.state = MemberState::Merged;
    source.merged_into = Some(target.member_id.clone());
    uow.update_member(&source).await?;
    uow.update_member(&target).await?;
    Ok(to_member(uow, target, now).await?)
}

/// One posting per asset the source holds: available and pending points, and each campaign's
/// coupons.
async fn merge_postings(
    uow: &mut dyn LedgerRows,
    source: &str,
    target: &str,
) -> Result<Vec<Posting>, StoreError> {
    let mut postings = Vec::new();
    let pairs = [
        (
            Account::Member(source.into()),
            Account::Member(target.into()),
        ),
        (
            Account::MemberPending(source.into()),
            Account::MemberPending(target.into()),
        ),
    ];
    for (from, to) in &pairs {
        let amount = uow.balance(&from.to_string(), "PTS").await?;
        if amount > 0 {
            postings.push(Posting::new(from, to, &Asset::Points, amount));
        }
    }
    let mut coupons_by_campaign = std::collections::BTreeMap::<String, i64>::new();
    for coupon in uow.member_coupons(source).await? {
        if coupon.state == crate::domain::coupon::CouponState::Active {
            *coupons_by_campaign.entry(coupon.campaign_id).or_default() += 1;
        }
    }
    for (campaign_id, count) in coupons_by_campaign {
        postings.push(Posting::new(
            &pairs[0].0,
            &pairs[0].1,
            &Asset::Coupon(campaign_id),
            count,
        ));
    }
    Ok(postings)
}

impl crate::domain::command::MemberCommand {
    pub(super) fn plan(&self, plan: &mut super::batch::Plan) {
        use crate::domain::command::MemberCommand::*;
        match self {
            CreateMember { identifiers, .. } => {
                plan.keys().identifiers.extend(identifiers.iter().cloned());
            }
            LinkIdentifier { member, identifier } => {
                plan.member(member);
                plan.keys().identifiers.push(identifier.clone());
            }
            MergeMembers {
                source_member_id,
                target_member_id,
            } => {
                let keys = plan.keys();
                keys.member_ids.push(source_member_id.clone());
                keys.member_ids.push(target_member_id.clone());
                plan.wants(1, 0);
            }
            UpdateMember { member, .. } => plan.member(member),
            UnlinkIdentifier { member, identifier } => {
                plan.member(member);
                plan.keys().identifiers.push(identifier.clone());
            }
            EraseMember { member } => {
                plan.member(member);
                plan.wants(2, 0);
            }
        }
    }

    pub(super) async fn run(
        &self,
        uow: &mut dyn LedgerRows,
        caller: &crate::domain::auth::Caller,
        now: DateTime<Utc>,
    ) -> CommandResult<crate::domain::command::Reply> {
        use crate::domain::{auth::Operation, command::MemberCommand::*, command::Reply};
        match self {
            CreateMember {
                identifiers,
                display_name,
            } => {
                caller.require(Operation::CreateMember)?;
                create(uow, now, identifiers, display_name)
                    .await
                    .map(Reply::Member)
            }
            LinkIdentifier { member, identifier } => {
                caller.require(Operation::LinkIdentifier)?;
                link(uow, now, member, identifier).await.map(Reply::Member)
            }
            MergeMembers {
                source_member_id,
                target_member_id,
            } => {
                caller.require(Operation::MergeMembers)?;
                merge(uow, now, source_member_id, target_member_id)
                    .await
                    .map(Reply::Member)
            }
            UpdateMember {
                member,
                display_name,
                attributes,
            } => {
                caller.require(Operation::UpdateMember)?;
                update(uow, now, member, display_name.as_ref(), attributes.as_ref())
                    .await
                    .map(Reply::Member)
            }
            UnlinkIdentifier { member, identifier } => {
                caller.require(Operation::UnlinkIdentifier)?;
                unlink(uow, now, member, identifier)
                    .await
                    .map(Reply::Member)
            }
            EraseMember { member } => {
                caller.require(Operation::EraseMember)?;
                erase(uow, now, member).await.map(Reply::Member)
            }
        }
    }
}
