//! `omo verify`: checks every ledger invariant of DESIGN.md over one consistent snapshot.

use std::collections::{BTreeMap, BTreeSet};

use super::{ChainCheck, Engine, EngineError, reports::store_zones, sealer};
use crate::domain::{
    Account, Asset,
    ports::{LedgerSnapshot, RuleTotals},
    rules::Rule,
    summary,
};

/// One invariant and what breaks it (empty = it holds).
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub violations: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub backend: &'static str,
    pub postings_checked: usize,
    pub checks: Vec<Check>,
    /// The journal's hash chain: how much of it is sealed, and its newest hash.
    pub chain: ChainCheck,
}

/// At most this many examples are listed per broken invariant.
const MAX_EXAMPLES: usize = 20;

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|check| check.violations.is_empty())
    }

    /// A human summary, one line per invariant.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "omo verify ({}): {} account/asset positions checked\n",
            self.backend, self.postings_checked
        );
        out.push_str(&format!(
            "  journal: {} transactions under {} seals{}; newest seal hash {}\n",
            self.chain.transactions_sealed,
            self.chain.seals,
            self.keyed_note(),
            self.chain.last_hash.as_deref().unwrap_or("(none yet)")
        ));
        for check in &self.checks {
            let verdict = if check.violations.is_empty() {
                "ok"
            } else {
                "VIOLATED"
            };
            out.push_str(&format!("  [{verdict}] {}\n", check.name));
            for violation in check.violations.iter().take(MAX_EXAMPLES) {
                out.push_str(&format!("      - {violation}\n"));
            }
            if check.violations.len() > MAX_EXAMPLES {
                out.push_str(&format!(
                    "      ... and {} more\n",
                    check.violations.len() - MAX_EXAMPLES
                ));
            }
        }
        out.push_str(if self.ok() {
            "all invariants hold\n"
        } else {
            "LEDGER INVARIANTS VIOLATED\n"
        });
        out
    }

    /// How far the keyed seals were checked: without the key, their hashes cannot be.
    fn keyed_note(&self) -> String {
        match (self.chain.keyed_seals, self.chain.key_given) {
            (0, _) => String::new(),
            (keyed, true) => format!(" ({keyed} keyed, checked with the seal key)"),
            (keyed, false) => format!(
                " ({keyed} keyed: their hashes NOT CHECKED without --seal-key-file, only their \
                 links and digests)"
            ),
        }
    }
}

impl Engine {
    pub async fn verify(&self) -> Result<VerifyReport, EngineError> {
        self.verify_expecting(None).await
    }

    /// [`Engine::verify`] (keyed seals checked with the engine's seal key, if it has one), and
    /// with `expected_head` (a seal hash kept outside the database, printed by an earlier
    /// verify) also that the chain still holds that seal: the newest seal is it or, the chain
    /// being unbroken, descends from it. A chain rewritten whole by someone with write access
    /// to the database does not.
    pub async fn verify_expecting(
        &self,
        expected_head: Option<&str>,
    ) -> Result<VerifyReport, EngineError> {
        // One snapshot for the invariants and the chain.
        let mut uow = self.store().begin_read().await?;
        let snapshot = uow.ledger_snapshot().await?;
        let chain = sealer::check_chain(uow.as_mut(), expected_head, self.seal_key()).await?;
        let mut checks = check_all(&snapshot);
        checks.push(Check {
            name: "6. the journal matches its seals (hash chain)",
            violations: chain.violations.clone(),
        });
        if let Some(head) = expected_head {
            checks.push(Check {
                name: "6. the chain holds the expected head (--expect-head)",
                violations: chain
                    .expected_head_seal
                    .is_none()
                    .then(|| {
                        format!(
                            "no seal has hash {head}: the chain was rewritten, or the hash is \
                             not of this database"
                        )
                    })
                    .into_iter()
                    .collect(),
            });
        }
        let stored = uow.report_sums().await?;
        let recomputed = uow.recompute_report_sums().await?;
        let zones = store_zones(uow.as_mut()).await?;
        checks.push(Check {
            name: "7. the report summaries equal a recomputation from the ledger",
            violations: summary::differences(stored, recomputed, |store_id| {
                zones.get(store_id).copied()
            }),
        });
        let rules = uow.list_rules().await?;
        let totals = uow.rule_totals(None).await?;
        checks.push(Check {
            name: "8. each rule's points equal its postings and stay within its budget",
            violations: rule_points(&rules, &totals, &positions(&snapshot.posting_sums)),
        });
        checks.push(Check {
            name: "9. the event feed's seqs are dense, and each capture has its event",
            violations: uow.event_audit().await?.violations(),
        });
        let program = uow.load_program(false).await?.unwrap_or_default();
        let tz = super::tiers::zone(&program);
        checks.push(Check {
            name: "10. members' monthly spend equals a recomputation from their orders and receipts",
            violations: crate::domain::tier::audit(tz, &uow.tier_audit().await?),
        });
        let mut campaigns = Vec::new();
        for campaign in uow.list_campaigns().await? {
            let issued = if campaign.stock_parts > 0 {
                uow.count_coupons(&campaign.campaign_id, None).await?
            } else {
                0
            };
            campaigns.push((campaign, issued));
        }
        checks.push(Check {
            name: "11. each limited campaign's stock and its coupons add up to its issue limit",
            violations: campaign_stock(&campaigns, &positions(&snapshot.posting_sums)),
        });
        Ok(VerifyReport {
            backend: self.backend_name(),
            postings_checked: snapshot.posting_sums.len(),
            checks,
            chain,
        })
    }
}

type Position = (String, String);

/// What each rule's counters say it gave equals what left its account: `budget_points` less
/// its budget's balance, or what its own account paid out; a budget never goes below zero.
/// Counters of a rule that does not exist are reported too.
fn rule_points(
    rules: &[Rule],
    totals: &[RuleTotals],
    sums: &BTreeMap<Position, i64>,
) -> Vec<String> {
    let points = Asset::Points.to_string();
    let balance = |account: Account| {
        sums.get(&(account.to_string(), points.clone()))
            .copied()
            .unwrap_or(0)
    };
    let mut violations = Vec::new();
    for rule in rules {
        let counted = totals
            .iter()
            .find(|t| t.rule_id == rule.rule_id)
            .map_or(0, |t| t.points);
        let posted = if rule.has_budget() {
            let left = balance(Account::RuleBudget(rule.rule_id.clone()));
            if left < 0 {
                violations.push(format!("rule {}: its budget is {left}", rule.rule_id));
            }
            rule.limits.budget_points - left
        } else {
            -balance(Account::Rule(rule.rule_id.clone()))
        };
        if counted != posted {
            violations.push(format!(
                "rule {}: its counters gave {counted} points, its postings {posted}",
                rule.rule_id
            ));
        }
    }
    for total in totals {
        if !rules.iter().any(|rule| rule.rule_id == total.rule_id) {
            violations.push(format!(
                "counters of rule {} that does not exist",
                total.rule_id
            ));
        }
    }
    violations
}

/// A limited campaign's stock (`domain::stock`) was funded with its limit and gives one unit
/// per coupon issued: what is left plus the coupons it issued (every state) is its limit.
/// Stock outside a campaign's parts (no limit, or no such campaign) is a violation too.
fn campaign_stock(
    campaigns: &[(crate::domain::coupon::Campaign, i64)],
    sums: &BTreeMap<Position, i64>,
) -> Vec<String> {
    let mut violations = Vec::new();
    let mut stock: BTreeMap<&str, i64> = BTreeMap::new();
    for ((account, asset), amount) in sums {
        let Some(Account::CampaignStock { campaign_id, part }) = Account::parse(account) else {
            continue;
        };
        let campaign = campaigns.iter().find(|(c, _)| c.campaign_id == campaign_id);
        let inside = campaign.is_some_and(|(c, _)| part < c.stock_parts);
        if *asset != crate::domain::stock::asset(&campaign_id).to_string()
            || (!inside && *amount != 0)
        {
            violations.push(format!(
                "{account} holds {amount} {asset}, outside any stock"
            ));
        }
        if let Some((campaign, _)) = campaign.filter(|_| inside) {
            *stock.entry(campaign.campaign_id.as_str()).or_default() += amount;
        }
    }
    for (campaign, issued) in campaigns.iter().filter(|(c, _)| c.stock_parts > 0) {
        let left = stock
            .get(campaign.campaign_id.as_str())
            .copied()
            .unwrap_or(0);
        if left + issued != i64::from(campaign.issue_limit) {
            violations.push(format!(
                "campaign {}: {left} in stock and {issued} coupons issued, but its issue limit \
                 is {}",
                campaign.campaign_id, campaign.issue_limit
            ));
        }
    }
    violations
}

fn positions(totals: &[crate::domain::ports::AccountTotal]) -> BTreeMap<Position, i64> {
    totals
        .iter()
        .map(|t| ((t.account.clone(), t.asset.clone()), t.amount))
        .collect()
}

pub fn check_all(snapshot: &LedgerSnapshot) -> Vec<Check> {
    let sums = positions(&snapshot.posting_sums);
    let stored = positions(&snapshot.stored_balances);
    vec![
        Check {
            name: "1. every posting moves a positive amount between two accounts",
            violations: (snapshot.malformed_postings > 0)
                .then(|| format!("{} malformed postings", snapshot.malformed_postings))
                .into_iter()
                .collect(),
        },
        Check {
            name: "1. the ledger sums to zero per asset",
            violations: zero_sum(&sums),
        },
        Check {
            name: "2. every stored balance equals the sum of its postings",
            violations: stored_match(&sums, &stored),
        },
        Check {
            name: "3. member and hold accounts are never negative",
            violations: non_negative(&sums, &stored),
        },
        Check {
            name: "4. a hold resolves at most once and holds exactly its order's points",
            violations: holds(snapshot, &sums),
        },
        Check {
            name: "5. lots add up to each member's available + held and pending points",
            violations: lots(snapshot, &sums),
        },
        Check {
            name: "coupon rows and coupon balances agree (revoked ones too)",
            violations: coupons(snapshot, &sums),
        },
        Check {
            name: "every coupon a rule issued names a rule that exists",
            violations: snapshot
                .coupons_without_rule
                .iter()
                .map(|code| format!("coupon {code}'s source names no rule"))
                .collect(),
        },
        Check {
            name: "erased members keep no personal data, points or coupons",
            violations: snapshot
                .erased_members_with_data
                .iter()
                .map(|member_id| format!("erased member {member_id} still holds data"))
                .collect(),
        },
        Check {
            name: "points of receipts in review equal their pending lots",
            violations: receipts(snapshot),
        },
        Check {
            name: "each imported opening balance is booked once, under its import record",
            violations: snapshot.imports_off_their_record.clone(),
        },
    ]
}

/// Every receipt waiting for review holds exactly its points in a pending lot of its own (so the
/// pending accounts hold them, check 5), and every accepted receipt's lot earned its points.
fn receipts(snapshot: &LedgerSnapshot) -> Vec<String> {
    let mut violations: Vec<String> = snapshot
        .receipts_off_their_lot
        .iter()
        .map(|what| format!("{what}: its points are not where its review status puts them"))
        .collect();
    let (in_review, in_lots) = (
        snapshot.receipt_points_in_review,
        snapshot.review_lot_points,
    );
    if in_review != in_lots {
        violations.push(format!(
            "receipts in review hold {in_review} points, their pending lots {in_lots}"
        ));
    }
    violations
}

fn zero_sum(sums: &BTreeMap<Position, i64>) -> Vec<String> {
    let mut per_asset: BTreeMap<&str, i64> = BTreeMap::new();
    for ((_, asset), amount) in sums {
        *per_asset.entry(asset).or_default() += amount;
    }
    per_asset
        .into_iter()
        .filter(|(_, total)| *total != 0)
        .map(|(asset, total)| format!("asset {asset} sums to {total}"))
        .collect()
}

fn stored_match(sums: &BTreeMap<Position, i64>, stored: &BTreeMap<Position, i64>) -> Vec<String> {
    let keys: BTreeSet<&Position> = sums
        .keys()
        .filter(|(account, _)| Account::is_guarded_name(account))
        .chain(stored.keys())
        .collect();
    keys.into_iter()
        .filter_map(|key| {
            let (posted, kept) = (
                sums.get(key).copied().unwrap_or(0),
                stored.get(key).copied().unwrap_or(0),
            );
            (posted != kept).then(|| {
                format!(
                    "{} {}: stored {kept}, postings sum to {posted}",
                    key.0, key.1
                )
            })
        })
        .collect()
}

fn non_negative(sums: &BTreeMap<Position, i64>, stored: &BTreeMap<Position, i64>) -> Vec<String> {
    sums.iter()
        .chain(stored.iter())
        .filter(|((account, _), amount)| Account::is_guarded_name(account) && **amount < 0)
        .map(|((account, asset), amount)| format!("{account} {asset} is {amount}"))
        .collect()
}

fn holds(snapshot: &LedgerSnapshot, sums: &BTreeMap<Position, i64>) -> Vec<String> {
    let mut violations: Vec<String> = snapshot
        .orders_resolved_twice
        .iter()
        .map(|order_id| format!("order {order_id}'s hold was resolved more than once"))
        .collect();
    let authorized: BTreeMap<String, i64> = snapshot.authorized_orders.iter().cloned().collect();
    for (order_id, points) in &authorized {
        let held = sums.get(&(Account::Hold(order_id.clone()).to_string(), "PTS".into()));
        if held.copied().unwrap_or(0) != *points {
            violations.push(format!(
                "open order {order_id} holds {held:?} points, not {points}"
            ));
        }
    }
    for ((account, asset), amount) in sums {
        if let Some(Account::Hold(order_id)) = Account::parse(account)
            && *amount != 0
            && !authorized.contains_key(&order_id)
        {
            violations.push(format!(
                "{account} still holds {amount} {asset} but the order is not open"
            ));
        }
    }
    violations
}

fn lots(snapshot: &LedgerSnapshot, sums: &BTreeMap<Position, i64>) -> Vec<String> {
    let points = |account: Account| {
        sums.get(&(account.to_string(), Asset::Points.to_string()))
            .copied()
            .unwrap_or(0)
    };
    let mut violations = Vec::new();
    let mut members_with_lots = BTreeSet::new();
    for totals in &snapshot.lot_totals {
        let member_id = &totals.member_id;
        members_with_lots.insert(member_id.clone());
        if totals.malformed_lots > 0 {
            violations.push(format!(
                "member {member_id}: {} malformed lots",
                totals.malformed_lots
            ));
        }
        let available = points(Account::Member(member_id.clone()));
        if totals.spendable_remaining - totals.held != available {
            violations.push(format!(
                "member {member_id}: lots hold {} free points, available balance is {available}",
                totals.spendable_remaining - totals.held
            ));
        }
        let pending = points(Account::MemberPending(member_id.clone()));
        if totals.pending_remaining != pending {
            violations.push(format!(
                "member {member_id}: pending lots hold {}, pending balance is {pending}",
                totals.pending_remaining
            ));
        }
    }
    let held_in_lots: i64 = snapshot.lot_totals.iter().map(|t| t.held).sum();
    let held_by_orders: i64 = snapshot.authorized_orders.iter().map(|(_, p)| p).sum();
    if held_in_lots != held_by_orders {
        violations.push(format!(
            "lots hold {held_in_lots} points for orders, open orders hold {held_by_orders}"
        ));
    }
    for ((account, asset), amount) in sums {
        let member = match Account::parse(account) {
            Some(Account::Member(id) | Account::MemberPending(id)) => id,
            _ => continue,
        };
        if asset == "PTS" && *amount != 0 && !members_with_lots.contains(&member) {
            violations.push(format!("{account} has {amount} points but no lots"));
        }
    }
    violations
}

fn coupons(snapshot: &LedgerSnapshot, sums: &BTreeMap<Position, i64>) -> Vec<String> {
    let rows = positions(&snapshot.coupon_positions);
    let ledger: BTreeMap<&Position, i64> = sums
        .iter()
        .filter(|((account, asset), _)| {
            asset.starts_with("CPN:")
                && match Account::parse(account) {
                    // Stock is what the campaign may still issue, not coupons (check 11).
                    Some(Account::CampaignStock { .. }) => false,
                    Some(Account::CampaignRevoked(_)) => true,
                    Some(other) => other.is_guarded(),
                    None => false,
                }
        })
        .map(|(key, amount)| (key, *amount))
        .collect();
    let keys: BTreeSet<&Position> = ledger.keys().copied().chain(rows.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let (booked, counted) = (
                ledger.get(key).copied().unwrap_or(0),
                rows.get(key).copied().unwrap_or(0),
            );
            (booked != counted).then(|| {
                format!(
                    "{} {}: ledger has {booked} coupons, coupon rows say {counted}",
                    key.0, key.1
                )
            })
        })
        .collect()
}
