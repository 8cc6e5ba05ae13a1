//! Ledger accounts and assets. Account names are the stable strings stored in postings
//! (`member:<id>`, `hold:<order_id>`, `program:issued`, ...).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::model::Channel;

/// What a posting moves: points, or units of one coupon campaign.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Asset {
    Points,
    Coupon(String),
}

impl Asset {
    pub fn parse(s: &str) -> Option<Asset> {
        match s {
            "PTS" => Some(Asset::Points),
            _ => s
                .strip_prefix("CPN:")
                .map(|campaign| Asset::Coupon(campaign.to_string())),
        }
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Asset::Points => f.write_str("PTS"),
            Asset::Coupon(campaign_id) => write!(f, "CPN:{campaign_id}"),
        }
    }
}

/// A ledger account.
///
/// Guarded accounts (members, holds, budgets and stock) have a stored balance that may never go below zero.
/// System accounts (`program:*`, `campaign:*`) are never locked or updated per posting: their
/// balances are summed from postings, so the hot `program:issued` is not a contention point.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Account {
    Member(String),
    MemberPending(String),
    Hold(String),
    ProgramIssued,
    ProgramRedeemed {
        channel: Channel,
        store_id: Option<String>,
    },
    ProgramExpired,
    ProgramShortfall,
    ProgramAdjustments,
    /// Points an erased member still had (EraseMember).
    ProgramForfeited,
    /// Where imported opening balances come from (`omo import members`): points the old
    /// program issued, neither earned in omo (not `program:issued`, so no report counts them as
    /// this period's earnings) nor an admin's adjustment.
    ProgramImported,
    Campaign(String),
    /// Part `part` of a limited campaign's stock: coupons it may still issue, funded from
    /// `campaign:<id>` with the issue limit and guarded like a member's balance, so the
    /// campaign can never issue more than its limit. The stock is split so that parallel
    /// writers draw from different rows (`Campaign::stock_parts`).
    CampaignStock {
        campaign_id: String,
        part: u8,
    },
    CampaignRedeemed(String),
    CampaignExpired(String),
    /// Coupons an admin revoked (RevokeCoupon): one unit per revoked coupon.
    CampaignRevoked(String),
    /// Where an unbudgeted rule's points come from (a system account, like `program:issued`).
    Rule(String),
    /// A budgeted rule's points: funded with the budget when the rule is made, guarded like
    /// a member's balance, so the rule can never give more than its budget.
    RuleBudget(String),
}

impl Account {
    /// Accounts with a stored, never-negative balance.
    pub fn is_guarded(&self) -> bool {
        matches!(
            self,
            Account::Member(_)
                | Account::MemberPending(_)
                | Account::Hold(_)
                | Account::RuleBudget(_)
                | Account::CampaignStock { .. }
        )
    }

    /// Whether the stored account name `name` is guarded (see [`Account::is_guarded`]).
    pub fn is_guarded_name(name: &str) -> bool {
        Account::parse(name).is_some_and(|account| account.is_guarded())
    }

    pub fn redeemed(channel: Channel, store_id: &str) -> Account {
        Account::ProgramRedeemed {
            channel,
            store_id: (!store_id.is_empty()).then(|| store_id.to_string()),
        }
    }

    /// Parses a stored account name; used by `omo verify` to classify accounts.
    pub fn parse(name: &str) -> Option<Account> {
        let parts: Vec<&str> = name.split(':').collect();
        Some(match parts.as_slice() {
            ["member", id] => Account::Member(id.to_string()),
            ["member", id, "pending"] => Account::MemberPending(id.to_string()),
            ["hold", order_id] => Account::Hold(order_id.to_string()),
            ["program", "issued"] => Account::ProgramIssued,
            ["program", "expired"] => Account::ProgramExpired,
            ["program", "shortfall"] => Account::ProgramShortfall,
            ["program", "adjustments"] => Account::ProgramAdjustments,
            ["program", "forfeited"] => Account::ProgramForfeited,
            ["program", "imported"] => Account::ProgramImported,
            ["program", "redeemed", channel] => Account::ProgramRedeemed {
                channel: Channel::parse(channel)?,
                store_id: None,
            },
            ["program", "redeemed", channel, store] => Account::ProgramRedeemed {
                channel: Channel::parse(channel)?,
                store_id: Some(store.to_string()),
            },
            ["campaign", id] => Account::Campaign(id.to_string()),
            ["campaign", id, "redeemed"] => Account::CampaignRedeemed(id.to_string()),
            ["campaign", id, "expired"] => Account::CampaignExpired(id.to_string()),
            ["campaign", id, "revoked"] => Account::CampaignRevoked(id.to_string()),
            ["campaign", id, "stock", part] => Account::CampaignStock {
                campaign_id: id.to_string(),
                part: part.parse().ok()?,
            },
            ["rule", id] => Account::Rule(id.to_string()),
            ["rule", id, "budget"] => Account::RuleBudget(id.to_string()),
            _ => return None,
        })
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Member(id) => write!(f, "member:{id}"),
            Account::MemberPending(id) => write!(f, "member:{id}:pending"),
            Account::Hold(order_id) => write!(f, "hold:{order_id}"),
            Account::ProgramIssued => f.write_str("program:issued"),
            Account::ProgramRedeemed {
                channel,
                store_id: None,
            } => write!(f, "program:redeemed:{}", channel.as_str()),
            Account::ProgramRedeemed {
                channel,
                store_id: Some(store),
            } => write!(f, "program:redeemed:{}:{store}", channel.as_str()),
            Account::ProgramExpired => f.write_str("program:expired"),
            Account::ProgramShortfall => f.write_str("program:shortfall"),
            Account::ProgramAdjustments => f.write_str("program:adjustments"),
            Account::ProgramForfeited => f.write_str("program:forfeited"),
            Account::ProgramImported => f.write_str("program:imported"),
            Account::Campaign(id) => write!(f, "campaign:{id}"),
            Account::CampaignRedeemed(id) => write!(f, "campaign:{id}:redeemed"),
            Account::CampaignExpired(id) => write!(f, "campaign:{id}:expired"),
            Account::CampaignRevoked(id) => write!(f, "campaign:{id}:revoked"),
            Account::CampaignStock { campaign_id, part } => {
                write!(f, "campaign:{campaign_id}:stock:{part}")
            }
            Account::Rule(id) => write!(f, "rule:{id}"),
            Account::RuleBudget(id) => write!(f, "rule:{id}:budget"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let accounts = [
            Account::Member("m_1".into()),
            Account::MemberPending("m_1".into()),
            Account::Hold("order-9".into()),
            Account::ProgramIssued,
            Account::ProgramForfeited,
            Account::redeemed(Channel::Ec, ""),
            Account::redeemed(Channel::Store, "shibuya"),
            Account::Campaign("c1".into()),
            Account::CampaignRedeemed("c1".into()),
            Account::CampaignRevoked("c1".into()),
            Account::CampaignStock {
                campaign_id: "c1".into(),
                part: 7,
            },
            Account::Rule("r1".into()),
            Account::RuleBudget("r1".into()),
        ];
        for account in accounts {
            assert_eq!(Account::parse(&account.to_string()), Some(account));
        }
        assert_eq!(Asset::parse("CPN:c1"), Some(Asset::Coupon("c1".into())));
        assert_eq!(Asset::parse("PTS"), Some(Asset::Points));
    }
}
