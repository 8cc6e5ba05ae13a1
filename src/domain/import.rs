//! Bulk import of members with their opening balances (`omo import members`): what one chunk
//! of validated lines writes, decided in memory like a batch and written by the same flush.
//!
//! Each imported member with points gets one journal entry of kind `import`: one posting from
//! `program:imported` to `member:<id>` for the sum of its points, and one available lot per
//! points entry with that entry's expiry. So every invariant `omo verify` checks holds as for
//! any other credit: the entry balances, the stored balance equals the postings, the lots add
//! up to the balance, and the lot summary follows the lots.
//!
//! Idempotency is by external_id: a line whose external_id is already recorded is skipped, and
//! the record is written in the chunk's transaction, so a killed run leaves whole chunks.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use super::{
    Account, Asset, ids,
    model::{Identifier, Lot, LotState, MemberRow, MemberState, Posting},
    ports::{AccountTotal, ChangeSet, NewTransaction},
    summary::{Tallies, activity_period},
};

/// One valid line of an import file (the edge has parsed and validated it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberImport {
    /// 1-based line number in the file, for reports.
    pub line_no: u64,
    pub external_id: String,
    pub identifiers: Vec<Identifier>,
    pub display_name: String,
    pub attributes: BTreeMap<String, String>,
    /// Opening balance: (points > 0, own expiry or None for the program's).
    pub points: Vec<(i64, Option<DateTime<Utc>>)>,
    /// '' when none; kept in the import record until tiers exist.
    pub tier_id: String,
}

/// Which member an external record became (table `member_imports`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRecord {
    pub external_id: String,
    pub member_id: String,
    pub tier_id: String,
    pub imported_at: DateTime<Utc>,
}

/// What became of one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineOutcome {
    Imported {
        member_id: String,
    },
    /// A run before this one imported it (or an earlier line of this run did).
    AlreadyImported {
        member_id: String,
    },
    /// Refused: the field and the problem; nothing of the line is written.
    Refused {
        field: String,
        problem: String,
    },
}

/// What the store already holds that a chunk's lines may clash with.
#[derive(Debug, Default)]
pub struct Existing {
    /// external_id → member_id of the lines imported before.
    pub imported: HashMap<String, String>,
    /// Identifiers linked to a member already.
    pub taken: BTreeSet<Identifier>,
    /// The program's tier ids: a line's `tier_id` must be one of them.
    pub tiers: BTreeSet<String>,
}

/// A chunk decided: the changes to flush, the records to write, and each line's outcome in
/// the order of the lines.
#[derive(Debug, Default)]
pub struct ChunkPlan {
    pub changes: ChangeSet,
    pub records: Vec<ImportRecord>,
    pub outcomes: Vec<(u64, LineOutcome)>,
}

impl ChunkPlan {
    /// How many transaction and lot ids the accepted lines need.
    pub fn ids_wanted(lines: &[MemberImport]) -> (usize, usize) {
        let with_points = lines.iter().filter(|l| !l.points.is_empty()).count();
        let lots = lines.iter().map(|l| l.points.len()).sum();
        (with_points, lots)
    }
}

/// Decides a chunk: skips lines already imported, refuses lines whose identifiers are taken
/// (or repeat an earlier line's of the chunk), and builds the rows of the rest.
/// `default_expiry` is the program's expiry for points imported `now` without one of their
/// own. `transaction_ids` and `lot_ids` are reserved ids, at least [`ChunkPlan::ids_wanted`].
pub fn plan_chunk(
    lines: &[MemberImport],
    existing: &Existing,
    now: DateTime<Utc>,
    default_expiry: Option<DateTime<Utc>>,
    (transaction_ids, lot_ids): (&[i64], &[i64]),
) -> ChunkPlan {
    let mut plan = ChunkPlan::default();
    let mut tallies = Tallies::new();
    let mut ids = (transaction_ids.iter(), lot_ids.iter());
    let mut seen_external: HashMap<&str, String> = HashMap::new();
    let mut claimed: BTreeSet<&Identifier> = BTreeSet::new();
    for line in lines {
        let outcome = if let Some(member_id) = existing
            .imported
            .get(&line.external_id)
            .or_else(|| seen_external.get(line.external_id.as_str()))
        {
            LineOutcome::AlreadyImported {
                member_id: member_id.clone(),
            }
        } else if let Some((i, _)) = (0..)
            .zip(&line.identifiers)
            .find(|(_, id)| existing.taken.contains(*id) || claimed.contains(id))
        {
            LineOutcome::Refused {
                field: format!("identifiers[{i}]"),
                problem: "already linked to another member".into(),
            }
        } else if !line.tier_id.is_empty() && !existing.tiers.contains(&line.tier_id) {
            LineOutcome::Refused {
                field: "tier_id".into(),
                problem: "is not one of the program's tiers".into(),
            }
        } else {
            claimed.extend(&line.identifiers);
            let member_id =
                add_member(&mut plan, &mut tallies, line, now, default_expiry, &mut ids);
            seen_external.insert(&line.external_id, member_id.clone());
            LineOutcome::Imported { member_id }
        };
        plan.outcomes.push((line.line_no, outcome));
    }
    plan.changes.balance_deltas.sort_by(|a, b| {
        (a.account.as_str(), a.asset.as_str()).cmp(&(b.account.as_str(), b.asset.as_str()))
    });
    plan.changes.report = tallies.finish();
    plan
}

type IdSource<'a> = (std::slice::Iter<'a, i64>, std::slice::Iter<'a, i64>);

/// The rows of one accepted line; its new member's id.
fn add_member(
    plan: &mut ChunkPlan,
    tallies: &mut Tallies,
    line: &MemberImport,
    now: DateTime<Utc>,
    default_expiry: Option<DateTime<Utc>>,
    (transaction_ids, lot_ids): &mut IdSource<'_>,
) -> String {
    let member_id = ids::new_member_id();
    let changes = &mut plan.changes;
    changes.new_members.push(MemberRow {
        member_id: member_id.clone(),
        display_name: line.display_name.clone(),
        state: MemberState::Active,
        merged_into: None,
        created_at: now,
        lifetime_earned_points: 0,
        lifetime_redeemed_points: 0,
        attributes: line.attributes.clone(),
        erased_at: None,
        // The old program's tier holds until the monthly review decides it from spend.
        tier: crate::domain::tier::MemberTier {
            tier_id: line.tier_id.clone(),
            since: (!line.tier_id.is_empty()).then_some(now),
            reviewed_at: (!line.tier_id.is_empty()).then_some(now),
        },
    });
    for identifier in &line.identifiers {
        changes
            .new_identifiers
            .push((identifier.clone(), member_id.clone()));
    }
    plan.records.push(ImportRecord {
        external_id: line.external_id.clone(),
        member_id: member_id.clone(),
        tier_id: line.tier_id.clone(),
        imported_at: now,
    });
    if line.points.is_empty() {
        return member_id;
    }
    for &(points, expires_at) in &line.points {
        let lot = Lot {
            lot_id: *lot_ids
                .next()
                .expect("ids_wanted reserved a lot id per entry"),
            member_id: member_id.clone(),
            order_id: String::new(),
            state: LotState::Available,
            earned_at: now,
            matures_at: None,
            expires_at: expires_at.or(default_expiry),
            original_points: points,
            remaining_points: points,
            held_points: 0,
            limited: expires_at.is_some(),
        };
        tallies.lot(&lot, 1);
        changes.new_lots.push(lot);
    }
    let total: i64 = line.points.iter().map(|(points, _)| points).sum();
    let account = Account::Member(member_id.clone());
    let entry = NewTransaction {
        kind: "import",
        member_id: member_id.clone(),
        occurred_at: now,
        recorded_at: now,
        channel: None,
        store_id: String::new(),
        order_id: String::new(),
        postings: vec![Posting::new(
            &Account::ProgramImported,
            &account,
            &Asset::Points,
            total,
        )],
        metadata: vec![("external_id".into(), line.external_id.clone())],
    };
    tallies.transaction(&entry, None, activity_period(None, now));
    let transaction_id = *transaction_ids
        .next()
        .expect("ids_wanted reserved a transaction id per member with points");
    changes.transactions.push((transaction_id, entry));
    changes.balance_deltas.push(AccountTotal {
        account: account.to_string(),
        asset: Asset::Points.to_string(),
        amount: total,
    });
    member_id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).expect("instant")
    }

    fn line(line_no: u64, external_id: &str, card: &str, points: &[i64]) -> MemberImport {
        MemberImport {
            line_no,
            external_id: external_id.into(),
            identifiers: vec![Identifier {
                kind: "card".into(),
                value: card.into(),
            }],
            display_name: format!("member {external_id}"),
            attributes: BTreeMap::new(),
            points: points
                .iter()
                .map(|&p| (p, Some(at(2_000_000_000))))
                .collect(),
            tier_id: String::new(),
        }
    }

    fn plan(lines: &[MemberImport], existing: &Existing) -> ChunkPlan {
        let (t, l) = ChunkPlan::ids_wanted(lines);
        let transaction_ids: Vec<i64> = (1..=t as i64).collect();
        let lot_ids: Vec<i64> = (100..100 + l as i64).collect();
        plan_chunk(
            lines,
            existing,
            at(1_700_000_000),
            None,
            (&transaction_ids, &lot_ids),
        )
    }

    #[test]
    fn each_member_gets_one_balanced_entry_and_a_lot_per_points_entry() {
        let lines = [line(1, "a", "c1", &[100, 50]), line(2, "b", "c2", &[])];
        let plan = plan(&lines, &Existing::default());
        let changes = &plan.changes;
        assert_eq!(changes.new_members.len(), 2);
        assert_eq!(changes.new_identifiers.len(), 2);
        assert_eq!(changes.transactions.len(), 1, "no entry without points");
        let (id, entry) = &changes.transactions[0];
        assert_eq!(*id, 1);
        assert_eq!(entry.postings.len(), 1);
        assert_eq!(entry.postings[0].from_account, "program:imported");
        assert_eq!(entry.postings[0].amount, 150);
        let lots: Vec<(i64, i64)> = changes
            .new_lots
            .iter()
            .map(|l| (l.lot_id, l.remaining_points))
            .collect();
        assert_eq!(lots, [(100, 100), (101, 50)]);
        assert!(changes.new_lots.iter().all(|l| l.limited));
        assert_eq!(changes.balance_deltas.len(), 1);
        assert_eq!(changes.balance_deltas[0].amount, 150);
        let lot_points: i64 = changes.report.lots.iter().map(|t| t.remaining_points).sum();
        assert_eq!(lot_points, 150, "the lot summary follows the lots");
        assert!(
            changes.report.activity.is_empty(),
            "imported points are not this period's earnings"
        );
        assert_eq!(plan.records.len(), 2);
        assert!(matches!(
            plan.outcomes[0],
            (1, LineOutcome::Imported { .. })
        ));
    }

    #[test]
    fn imported_lines_are_skipped_and_taken_identifiers_refused() {
        let mut existing = Existing::default();
        existing.imported.insert("a".into(), "m_old".into());
        existing.taken.insert(Identifier {
            kind: "card".into(),
            value: "c2".into(),
        });
        let lines = [
            line(1, "a", "c1", &[10]),
            line(2, "b", "c2", &[10]),
            line(3, "c", "c3", &[10]),
            line(4, "d", "c3", &[10]),
            line(5, "c", "c9", &[10]),
        ];
        let plan = plan(&lines, &existing);
        let kinds: Vec<String> = plan
            .outcomes
            .iter()
            .map(|(n, o)| match o {
                LineOutcome::Imported { .. } => format!("{n} imported"),
                LineOutcome::AlreadyImported { .. } => format!("{n} skipped"),
                LineOutcome::Refused { field, .. } => format!("{n} refused {field}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "1 skipped",
                "2 refused identifiers[0]",
                "3 imported",
                "4 refused identifiers[0]",
                "5 skipped",
            ]
        );
        assert_eq!(plan.changes.new_members.len(), 1);
        assert_eq!(plan.changes.transactions.len(), 1);
        assert_eq!(plan.records.len(), 1);
    }

    #[test]
    fn points_without_an_expiry_take_the_programs() {
        let mut l = line(1, "a", "c1", &[]);
        l.points = vec![(5, None)];
        let default = Some(at(1_800_000_000));
        let plan = plan_chunk(
            &[l],
            &Existing::default(),
            at(1_700_000_000),
            default,
            (&[1], &[1]),
        );
        let lot = &plan.changes.new_lots[0];
        assert_eq!(lot.expires_at, default);
        assert!(!lot.limited);
    }
}
