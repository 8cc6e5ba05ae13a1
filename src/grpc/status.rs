//! The one place where engine errors become gRPC statuses.
//!
//! Every domain refusal carries `ErrorInfo { reason, domain: "omo.v1" }`; invalid arguments also
//! carry a `BadRequest` with one `FieldViolation` per bad field. Internal errors are logged with
//! their whole cause chain and reach the client as a bare `INTERNAL` (never SQL or stack text).

use std::{collections::HashMap, error::Error as _, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    domain::{DomainError, FieldViolation, command::Reply, error::ErrorClass, ports::StoreError},
    engine::EngineError,
};

/// `ErrorInfo.domain` of every omo refusal.
pub const ERROR_DOMAIN: &str = "omo.v1";

/// Maps an engine error to the status the client sees.
pub fn to_status(error: EngineError) -> Status {
    match error {
        EngineError::Domain(refusal) => refusal_status(&refusal),
        EngineError::Overloaded => retry_later(
            Code::Unavailable,
            "OVERLOADED",
            "the server is overloaded; retry shortly",
            OVERLOADED_RETRY,
        ),
        EngineError::Internal(StoreError::Unavailable(why)) => {
            tracing::warn!(%why, "database unavailable");
            unavailable("the database is busy; retry shortly")
        }
        // The writers have already tried again on new connections for a while (see
        // `engine/writer.rs`); a read is not tried again, the client may.
        EngineError::Internal(StoreError::ConnectionLost(why)) => {
            tracing::warn!(%why, "database connection lost");
            unavailable(
                "the database cannot be reached; retry shortly (with the same request_id a \
                 retry never applies a request twice)",
            )
        }
        EngineError::Internal(_) | EngineError::Sealing(_) => {
            let mut causes = Vec::new();
            let mut source = error.source();
            while let Some(cause) = source {
                causes.push(cause.to_string());
                source = cause.source();
            }
            tracing::error!(error = %error, causes = ?causes, "internal error");
            internal()
        }
    }
}

impl From<EngineError> for Status {
    fn from(error: EngineError) -> Self {
        to_status(error)
    }
}

fn refusal_status(refusal: &DomainError) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(refusal.reason(), ERROR_DOMAIN, HashMap::new());
    let message = match refusal {
        DomainError::InvalidArgument(violations) => {
            details.set_bad_request(
                violations
                    .iter()
                    .map(|v| tonic_types::FieldViolation::new(&v.field, &v.description))
                    .collect::<Vec<_>>(),
            );
            invalid_message(violations)
        }
        other => other.to_string(),
    };
    Status::with_error_details(code_of(refusal.class()), message, details)
}

fn code_of(class: ErrorClass) -> Code {
    match class {
        ErrorClass::InvalidArgument => Code::InvalidArgument,
        ErrorClass::NotFound => Code::NotFound,
        ErrorClass::AlreadyExists => Code::AlreadyExists,
        ErrorClass::FailedPrecondition => Code::FailedPrecondition,
        ErrorClass::ResourceExhausted => Code::ResourceExhausted,
        ErrorClass::PermissionDenied => Code::PermissionDenied,
    }
}

/// "invalid request: basket.lines[0].amount: must not be negative; ..."
fn invalid_message(violations: &[FieldViolation]) -> String {
    let fields: Vec<String> = violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect();
    format!("invalid request: {}", fields.join("; "))
}

/// How long a client is told to wait when the write queue is full.
const OVERLOADED_RETRY: Duration = Duration::from_millis(100);

/// A refusal the client should retry after `delay`: ErrorInfo and RetryInfo.
pub fn retry_later(code: Code, reason: &str, message: &str, delay: Duration) -> Status {
    let mut details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new());
    details.set_retry_info(Some(delay));
    Status::with_error_details(code, message, details)
}

/// A key over its role's rate limit.
pub fn rate_limited(delay: Duration) -> Status {
    retry_later(
        Code::ResourceExhausted,
        "RATE_LIMITED",
        "too many calls with this API key; retry after the delay in RetryInfo",
        delay,
    )
}

/// A missing, malformed or unknown API key.
pub fn unauthenticated(message: &str) -> Status {
    let details = ErrorDetails::with_error_info("UNAUTHENTICATED", ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(Code::Unauthenticated, message, details)
}

/// The engine answered a command with a reply of another kind: a bug, logged, shown as INTERNAL.
pub fn unexpected_reply(expected: &str, reply: &Reply) -> Status {
    let got = match reply {
        Reply::Member(_) => "member",
        Reply::Transaction(_) => "transaction",
        Reply::Order(_) => "order",
        Reply::Refund(_) => "refund",
        Reply::Store(_) => "store",
        Reply::Program(_) => "program",
        Reply::Campaign(_) => "campaign",
        Reply::Rule(_) => "rule",
        Reply::Coupon(_) => "coupon",
        Reply::GeoRule(_) => "geo rule",
        Reply::VisitRule(_) => "visit rule",
        Reply::Location(_) => "location result",
        Reply::ReceiptRule(_) => "receipt rule",
        Reply::Receipt(_) => "receipt result",
        Reply::Tracked(_) => "track result",
    };
    tracing::error!(expected, got, "engine returned an unexpected reply");
    internal()
}

/// An invariant of the edge itself broke (e.g. a field failed to parse without a violation).
pub fn bug(what: &str) -> Status {
    tracing::error!(what, "gRPC edge invariant broken");
    internal()
}

/// The database could not be used (no connection free in time, or it stayed unreachable): the
/// client may retry shortly.
fn unavailable(message: &str) -> Status {
    let mut details =
        ErrorDetails::with_error_info("DATABASE_UNAVAILABLE", ERROR_DOMAIN, HashMap::new());
    details.set_retry_info(Some(UNAVAILABLE_RETRY_DELAY));
    Status::with_error_details(Code::Unavailable, message, details)
}

/// How long a client should wait before retrying after UNAVAILABLE.
const UNAVAILABLE_RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

fn internal() -> Status {
    Status::internal("internal error")
}

/// The fields a status's `BadRequest` names, in order (none without a `BadRequest`).
#[cfg(test)]
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|f| f.field.clone()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_bad_request_and_error_info() {
        let status = to_status(
            DomainError::InvalidArgument(vec![
                FieldViolation::new("a", "bad"),
                FieldViolation::new("b.c", "worse"),
            ])
            .into(),
        );
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let fields: Vec<_> = details
            .bad_request()
            .expect("bad request")
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["a", "b.c"]);
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, "INVALID_ARGUMENT");
        assert_eq!(info.domain, "omo.v1");
    }

    #[test]
    fn refusals_map_to_codes_with_reasons() {
        let status = to_status(DomainError::MemberNotFound.into());
        assert_eq!(status.code(), Code::NotFound);
        let details = status.get_error_details();
        assert_eq!(
            details.error_info().expect("info").reason,
            "MEMBER_NOT_FOUND"
        );
        assert!(details.bad_request().is_none());
    }

    #[test]
    fn an_overloaded_writer_says_when_to_retry() {
        let status = to_status(EngineError::Overloaded);
        assert_eq!(status.code(), Code::Unavailable);
        let details = status.get_error_details();
        assert_eq!(details.error_info().expect("info").reason, "OVERLOADED");
        assert_eq!(
            details.retry_info().and_then(|r| r.retry_delay),
            Some(OVERLOADED_RETRY)
        );
    }

    #[test]
    fn an_unavailable_database_is_unavailable_with_retry_info() {
        let status = to_status(StoreError::Unavailable("pool timed out".into()).into());
        assert_eq!(status.code(), Code::Unavailable);
        let details = status.get_error_details();
        assert_eq!(
            details.retry_info().expect("retry info").retry_delay,
            Some(UNAVAILABLE_RETRY_DELAY)
        );
        assert_eq!(
            details.error_info().expect("info").reason,
            "DATABASE_UNAVAILABLE"
        );
        assert!(!status.message().contains("pool"), "{}", status.message());
    }

    #[test]
    fn a_lost_connection_is_unavailable_without_its_cause() {
        let status =
            to_status(StoreError::ConnectionLost("connection reset by peer".into()).into());
        assert_eq!(status.code(), Code::Unavailable);
        let details = status.get_error_details();
        assert_eq!(
            details.error_info().expect("info").reason,
            "DATABASE_UNAVAILABLE"
        );
        assert!(details.retry_info().is_some());
        assert!(!status.message().contains("reset"), "{}", status.message());
    }

    #[test]
    fn internal_errors_do_not_leak() {
        let status = to_status(
            StoreError::Database("syntax error near SELECT * FROM api_keys".into()).into(),
        );
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
    }
}
