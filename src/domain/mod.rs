//! Pure domain logic: ledger postings, point lots, pricing, money, refusals, geofences, rule
//! schedules, location signals and the reports' arithmetic. No sqlx, no tonic.
//!
//! The command engine (`crate::engine`) drives these types against a unit of work
//! (`ports::UnitOfWork`) that a storage backend implements.

pub mod account;
pub mod attributes;
pub mod auth;
pub mod clock;
pub mod command;
pub mod coupon;
pub mod error;
pub mod event;
pub mod geo;
pub mod ids;
pub mod import;
pub mod location;
pub mod lots;
pub mod model;
pub mod money;
pub mod page;
pub mod ports;
pub mod pricing;
pub mod receipt;
pub mod receipt_text;
pub mod report;
pub mod rules;
pub mod schedule;
pub mod seal;
pub mod session;
pub mod stock;
pub mod summary;
pub mod tier;
pub mod webhook;

pub use account::{Account, Asset};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{DomainError, FieldViolation};
pub use money::Money;
