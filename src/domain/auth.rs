//! Who may do what: API-key roles and their reach (the table at the end of API.md).

use serde::{Deserialize, Serialize};

use super::{error::DomainError, model::Channel};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Admin,
    Checkout,
    Register,
    App,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Checkout => "checkout",
            Role::Register => "register",
            Role::App => "app",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Admin, Role::Checkout, Role::Register, Role::App]
            .into_iter()
            .find(|role| role.as_str() == s)
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub key_id: String,
    pub role: Role,
    /// The store a `register` key is bound to.
    pub store_id: Option<String>,
}

/// Operations whose permission depends on the role alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    CreateMember,
    GetMember,
    LinkIdentifier,
    MergeMembers,
    /// UpdateMember: display name and attributes.
    UpdateMember,
    GetBalance,
    ListTransactions,
    AdjustPoints,
    ManageStores,
    ManageProgram,
    ManageCampaigns,
    IssueCoupon,
    ReadCoupons,
    /// CreateGeoRule, CreateVisitRule.
    ManageRules,
    ReportLocation,
    ListNearbyOffers,
    SubmitReceipt,
    /// ListReceipts of one member (the app shows a member's history).
    ListMemberReceipts,
    /// ReviewReceipt, and ListReceipts by status (the review queue).
    ReviewReceipts,
    /// ReportService: liability, campaign statistics, activity.
    ReadReports,
}

impl Caller {
    pub fn require(&self, operation: Operation) -> Result<(), DomainError> {
        use Operation::*;
        let allowed = match self.role {
            Role::Admin => true,
            Role::Checkout => matches!(
                operation,
                CreateMember
                    | GetMember
                    | LinkIdentifier
                    | GetBalance
                    | ListTransactions
                    | ReadCoupons
            ),
            // The app backend acts for any member (API.md: app signals).
            Role::App => matches!(
                operation,
                CreateMember
                    | GetMember
                    | LinkIdentifier
                    | GetBalance
                    | ListTransactions
                    | ReadCoupons
                    | ReportLocation
                    | ListNearbyOffers
                    | SubmitReceipt
                    | ListMemberReceipts
                    | UpdateMember
            ),
            Role::Register => matches!(operation, GetMember | GetBalance),
        };
        if allowed {
            Ok(())
        } else {
            Err(DomainError::PermissionDenied(format!(
                "role {} may not {operation:?}",
                self.role.as_str()
            )))
        }
    }

    /// Whether an order of `channel` at `store_id` is within the caller's checkout scope.
    pub fn may_see_order(&self, channel: Channel, store_id: &str) -> bool {
        self.require_checkout(channel, store_id).is_ok()
    }

    /// Checkout calls are scoped by channel: EC backend → EC, app → APP, a register → STORE at
    /// its own store only.
    pub fn require_checkout(&self, channel: Channel, store_id: &str) -> Result<(), DomainError> {
        let allowed = match self.role {
            Role::Admin => true,
            Role::Checkout => channel == Channel::Ec,
            Role::App => channel == Channel::App,
            Role::Register => {
                channel == Channel::Store && self.store_id.as_deref() == Some(store_id)
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(DomainError::PermissionDenied(format!(
                "role {} may not act on channel {} at store {store_id:?}",
                self.role.as_str(),
                channel.as_str()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, store: Option<&str>) -> Caller {
        Caller {
            key_id: "k".into(),
            role,
            store_id: store.map(str::to_string),
        }
    }

    #[test]
    fn register_is_bound_to_its_store_and_channel() {
        let register = caller(Role::Register, Some("s1"));
        assert!(register.require_checkout(Channel::Store, "s1").is_ok());
        assert!(register.require_checkout(Channel::Store, "s2").is_err());
        assert!(register.require_checkout(Channel::Ec, "s1").is_err());
        assert!(register.require(Operation::AdjustPoints).is_err());
        assert!(register.require(Operation::GetBalance).is_ok());
    }

    #[test]
    fn checkout_and_app_keep_to_their_channels() {
        let checkout = caller(Role::Checkout, None);
        assert!(checkout.require_checkout(Channel::Ec, "").is_ok());
        assert!(checkout.require_checkout(Channel::Store, "s1").is_err());
        let app = caller(Role::App, None);
        assert!(app.require_checkout(Channel::App, "").is_ok());
        assert!(app.require_checkout(Channel::Ec, "").is_err());
        assert!(app.require(Operation::MergeMembers).is_err());
    }
}
