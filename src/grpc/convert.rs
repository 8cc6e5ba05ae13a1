//! Shared proto ⇄ domain conversions and the request validation helpers.
//!
//! Requests are parsed field by field into a [`Violations`] collector, so one reply names every
//! bad field at once (`basket.lines[2].amount`, `member.identifier.kind`), and nothing invalid
//! reaches the engine. Parsers return `Option`: `None` always comes with a recorded violation, and
//! [`Violations::build`] assembles the domain value only when no field was bad.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use prost_types::Timestamp;
use rust_decimal::Decimal;
use tonic::Status;

use super::status::{bug, to_status};
use crate::{
    domain::{
        DomainError, FieldViolation, Money,
        ids::normalize_code,
        model::{Channel, Identifier, LineItem, MemberRef},
    },
    proto,
};

/// Longest request_id, in characters.
pub const MAX_REQUEST_ID_CHARS: usize = 128;
/// Longest id (member, order, store, register, receipt, campaign, line, variant), in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Most lines in a basket.
pub const MAX_BASKET_LINES: usize = 500;
/// Most units on one basket line.
pub const MAX_LINE_QUANTITY: i32 = 1_000_000;
/// Most points in one redemption or adjustment.
pub const MAX_POINTS: i64 = 1_000_000_000_000;
/// Most coupon codes in one checkout.
pub const MAX_COUPON_CODES: usize = 10;
/// Longest coupon code after normalising, in characters.
pub const MAX_COUPON_CODE_CHARS: usize = 64;
/// Longest free-text SKU or category of a basket line, in characters.
pub const MAX_LINE_TEXT_CHARS: usize = 256;
/// Largest basket total (the same limit as any single amount).
const MAX_TOTAL: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0); // 1e12
/// Earliest and latest instants a `google.protobuf.Timestamp` may carry (0001-01-01 to
/// 9999-12-31T23:59:59Z).
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// Collects the bad fields of one request.
#[derive(Debug, Default)]
pub struct Violations {
    violations: Vec<FieldViolation>,
}

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.violations
            .push(FieldViolation::new(field, description));
    }

    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn into_vec(self) -> Vec<FieldViolation> {
        self.violations
    }

    /// `Ok` when no field was bad; otherwise INVALID_ARGUMENT with one violation per bad field.
    pub fn finish(self) -> Result<(), Status> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(self.into_status())
        }
    }

    /// INVALID_ARGUMENT with the violations collected so far.
    pub fn into_status(self) -> Status {
        to_status(DomainError::InvalidArgument(self.violations).into())
    }

    /// [`finish`](Self::finish), then assembles the value from the parsed fields. `make` sees
    /// only fields that parsed (every `None` recorded a violation), so it returns `Some`; a `None`
    /// would be a bug of this module and becomes INTERNAL.
    pub fn build<T>(self, make: impl FnOnce() -> Option<T>) -> Result<T, Status> {
        self.finish()?;
        make().ok_or_else(|| bug("a request field failed to parse without a violation"))
    }
}

/// A request's one validated field: the value `parse` reads, or INVALID_ARGUMENT.
pub fn parse_field<T>(parse: impl FnOnce(&mut Violations) -> Option<T>) -> Result<T, Status> {
    let mut v = Violations::new();
    let value = parse(&mut v);
    v.build(|| value)
}

/// A request's one required id (as [`check_id`]), or INVALID_ARGUMENT.
pub fn required_id(field: &str, value: &str) -> Result<(), Status> {
    let mut v = Violations::new();
    check_id(&mut v, field, value);
    v.finish()
}

/// INVALID_ARGUMENT for one bad field.
pub fn invalid_field(field: &str, description: &str) -> Status {
    let mut v = Violations::new();
    v.push(field, description);
    v.into_status()
}

/// `prefix.name`, or `name` at the top level.
pub fn path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

// ---------------------------------------------------------------------------------------------
// Text and ids

/// Free text of `min..=max` characters without control characters.
pub fn check_text(v: &mut Violations, field: &str, value: &str, min: usize, max: usize) -> bool {
    let chars = value.chars().count();
    let problem = if chars < min {
        if min == 1 {
            "is required".to_string()
        } else {
            format!("must be at least {min} characters")
        }
    } else if chars > max {
        format!("must be at most {max} characters")
    } else if value.chars().any(char::is_control) {
        "must not contain control characters".to_string()
    } else {
        return true;
    };
    v.push(field, problem);
    false
}

/// The idempotency key of an admin create or update: empty (the write is not idempotent, as before
/// request_id existed there) or 1-128 characters like every other request_id.
pub fn optional_request_id(v: &mut Violations, value: &str) -> Option<String> {
    if value.is_empty() {
        None
    } else {
        check_request_id(v, value);
        Some(value.to_string())
    }
}

/// The idempotency key of a mutating request: 1-128 characters.
pub fn check_request_id(v: &mut Violations, value: &str) -> bool {
    check_text(v, "request_id", value, 1, MAX_REQUEST_ID_CHARS)
}

/// A required id: 1-128 characters of `[A-Za-z0-9._-]`. Ids become parts of ledger account
/// names, whose separator is ':', so no other characters are allowed.
pub fn check_id(v: &mut Violations, field: &str, value: &str) -> bool {
    if value.is_empty() {
        v.push(field, "is required");
        false
    } else {
        check_optional_id(v, field, value)
    }
}

/// An optional id: empty, or as [`check_id`].
pub fn check_optional_id(v: &mut Violations, field: &str, value: &str) -> bool {
    let problem = if value.chars().count() > MAX_ID_CHARS {
        format!("must be at most {MAX_ID_CHARS} characters")
    } else if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        "may contain only letters, digits, '.', '_' and '-'".to_string()
    } else {
        return true;
    };
    v.push(field, problem);
    false
}

// ---------------------------------------------------------------------------------------------
// Members

/// A member identifier: kind 1-64 of `[a-z0-9_]`, value 1-256 characters without control
/// characters.
pub fn identifier(
    v: &mut Violations,
    field: &str,
    identifier: Option<proto::Identifier>,
) -> Option<Identifier> {
    let Some(proto::Identifier { kind, value }) = identifier else {
        v.push(field, "is required");
        return None;
    };
    let kind_field = path(field, "kind");
    let kind_ok = if kind.is_empty() {
        v.push(kind_field, "is required");
        false
    } else if kind.len() > 64
        || !kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        v.push(kind_field, "must be 1-64 characters of [a-z0-9_]");
        false
    } else {
        true
    };
    let value_ok = check_text(v, &path(field, "value"), &value, 1, 256);
    (kind_ok && value_ok).then_some(Identifier { kind, value })
}

/// A `MemberRef`: exactly one of `member_id` and `identifier`.
pub fn member_ref(
    v: &mut Violations,
    field: &str,
    member: Option<proto::MemberRef>,
) -> Option<MemberRef> {
    use proto::member_ref::Ref;
    match member.and_then(|m| m.r#ref) {
        None => {
            v.push(field, "is required (member_id or identifier)");
            None
        }
        Some(Ref::MemberId(member_id)) => {
            check_id(v, &path(field, "member_id"), &member_id).then_some(MemberRef::Id(member_id))
        }
        Some(Ref::Identifier(id)) => {
            identifier(v, &path(field, "identifier"), Some(id)).map(MemberRef::Identifier)
        }
    }
}

pub fn identifier_out(identifier: Identifier) -> proto::Identifier {
    proto::Identifier {
        kind: identifier.kind,
        value: identifier.value,
    }
}

// ---------------------------------------------------------------------------------------------
// Channels

/// A required channel (CHANNEL_UNSPECIFIED and unknown values are violations).
pub fn channel(v: &mut Violations, field: &str, value: i32) -> Option<Channel> {
    match proto::Channel::try_from(value) {
        Ok(proto::Channel::Ec) => Some(Channel::Ec),
        Ok(proto::Channel::Store) => Some(Channel::Store),
        Ok(proto::Channel::App) => Some(Channel::App),
        Ok(proto::Channel::Unspecified) => {
            v.push(
                field,
                "is required (CHANNEL_EC, CHANNEL_STORE or CHANNEL_APP)",
            );
            None
        }
        Err(_) => {
            v.push(field, format!("unknown channel {value}"));
            None
        }
    }
}

/// A list of channels (empty = all), each required to be a real channel; duplicates collapse.
pub fn channels(v: &mut Violations, field: &str, values: &[i32]) -> Option<Vec<Channel>> {
    let mut ok = true;
    let mut out = Vec::new();
    for (i, value) in values.iter().enumerate() {
        match channel(v, &format!("{field}[{i}]"), *value) {
            Some(c) if !out.contains(&c) => out.push(c),
            Some(_) => {}
            None => ok = false,
        }
    }
    ok.then_some(out)
}

pub fn channel_out(channel: Channel) -> i32 {
    let channel = match channel {
        Channel::Ec => proto::Channel::Ec,
        Channel::Store => proto::Channel::Store,
        Channel::App => proto::Channel::App,
    };
    channel.into()
}

/// A transaction's channel; CHANNEL_UNSPECIFIED when it is not channel-related.
pub fn optional_channel_out(channel: Option<Channel>) -> i32 {
    channel.map_or(proto::Channel::Unspecified.into(), channel_out)
}

// ---------------------------------------------------------------------------------------------
// Money and decimals

/// A money amount: a plain non-negative decimal string (`"1980"`, `"1980.50"`).
pub fn money(v: &mut Violations, field: &str, value: &str) -> Option<Money> {
    match value.parse::<Money>() {
        Ok(money) => Some(money),
        Err(error) => {
            v.push(field, error.to_string());
            None
        }
    }
}

/// A money amount that must be greater than zero.
pub fn positive_money(v: &mut Violations, field: &str, value: &str) -> Option<Money> {
    let amount = money(v, field, value)?;
    if amount.is_zero() {
        v.push(field, "must be greater than 0");
        return None;
    }
    Some(amount)
}

/// A money amount where empty means zero.
pub fn money_or_zero(v: &mut Violations, field: &str, value: &str) -> Option<Money> {
    if value.is_empty() {
        Some(Money::ZERO)
    } else {
        money(v, field, value)
    }
}

/// Most fractional digits of a rate or percentage.
const MAX_DECIMAL_SCALE: u32 = 6;

/// A plain decimal (rates, percentages): digits with an optional '.', at most `max`, ≥ 0.
pub fn decimal(v: &mut Violations, field: &str, value: &str, max: Decimal) -> Option<Decimal> {
    let plain = !value.is_empty()
        && value.len() <= 32
        && value.chars().all(|c| c.is_ascii_digit() || c == '.')
        && value.chars().any(|c| c.is_ascii_digit());
    let parsed = plain.then(|| Decimal::from_str_exact(value).ok()).flatten();
    match parsed {
        None => {
            v.push(
                field,
                "must be a non-negative decimal number such as \"0.01\"",
            );
            None
        }
        Some(d) if d > max => {
            v.push(field, format!("must not exceed {max}"));
            None
        }
        // Bounded precision keeps every product and quotient of prices far inside Decimal.
        Some(d) if d.normalize().scale() > MAX_DECIMAL_SCALE => {
            v.push(
                field,
                format!("at most {MAX_DECIMAL_SCALE} fractional digits"),
            );
            None
        }
        Some(d) => Some(d.normalize()),
    }
}

/// A decimal as it goes out: no trailing zeros ("0.01", "1").
pub fn decimal_out(value: Decimal) -> String {
    value.normalize().to_string()
}

// ---------------------------------------------------------------------------------------------
// Points

/// Points to redeem: 0..=1e12.
pub fn check_points_to_redeem(v: &mut Violations, field: &str, points: i64) -> bool {
    if (0..=MAX_POINTS).contains(&points) {
        true
    } else {
        v.push(field, format!("must be between 0 and {MAX_POINTS}"));
        false
    }
}

// ---------------------------------------------------------------------------------------------
// Baskets

/// The lines of a basket: 1-500 lines with unique line ids, quantities 1-1,000,000 and valid
/// amounts. Every bad field of every line is reported.
pub fn basket(
    v: &mut Violations,
    field: &str,
    basket: Option<proto::Basket>,
) -> Option<Vec<LineItem>> {
    let lines = basket.map(|b| b.lines).unwrap_or_default();
    let lines_field = path(field, "lines");
    if lines.is_empty() {
        v.push(lines_field, "must have at least 1 line");
        return None;
    }
    if lines.len() > MAX_BASKET_LINES {
        v.push(
            lines_field,
            format!("must have at most {MAX_BASKET_LINES} lines"),
        );
        return None;
    }
    let mut seen = HashSet::new();
    let mut items = Vec::with_capacity(lines.len());
    let mut ok = true;
    for (i, line) in lines.into_iter().enumerate() {
        let line_field = format!("{lines_field}[{i}]");
        let id_field = path(&line_field, "line_id");
        let mut line_ok = check_id(v, &id_field, &line.line_id);
        if line_ok && !seen.insert(line.line_id.clone()) {
            v.push(id_field, format!("duplicate line_id {:?}", line.line_id));
            line_ok = false;
        }
        line_ok &= check_text(
            v,
            &path(&line_field, "sku"),
            &line.sku,
            0,
            MAX_LINE_TEXT_CHARS,
        );
        line_ok &= check_text(
            v,
            &path(&line_field, "category"),
            &line.category,
            0,
            MAX_LINE_TEXT_CHARS,
        );
        if !(1..=MAX_LINE_QUANTITY).contains(&line.quantity) {
            v.push(
                path(&line_field, "quantity"),
                format!("must be between 1 and {MAX_LINE_QUANTITY}"),
            );
            line_ok = false;
        }
        match money(v, &path(&line_field, "amount"), &line.amount) {
            Some(amount) if line_ok => items.push(LineItem {
                line_id: line.line_id,
                sku: line.sku,
                category: line.category,
                quantity: line.quantity,
                amount,
            }),
            _ => ok = false,
        }
    }
    if !ok {
        return None;
    }
    if items
        .iter()
        .map(|line| line.amount.amount())
        .sum::<Decimal>()
        > MAX_TOTAL
    {
        v.push(field, format!("total must not exceed {MAX_TOTAL}"));
        return None;
    }
    Some(items)
}

// ---------------------------------------------------------------------------------------------
// Coupon codes

/// A coupon code as typed (any case, dashes and spaces ignored), normalised: 1-64 letters and
/// digits.
pub fn coupon_code(v: &mut Violations, field: &str, value: &str) -> Option<String> {
    let code = normalize_code(value);
    if code.is_empty() {
        v.push(field, "is required");
        None
    } else if code.chars().count() > MAX_COUPON_CODE_CHARS {
        v.push(
            field,
            format!("must be at most {MAX_COUPON_CODE_CHARS} characters"),
        );
        None
    } else if !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        v.push(
            field,
            "may contain only letters and digits (dashes and spaces are ignored)",
        );
        None
    } else {
        Some(code)
    }
}

/// The coupon codes of a checkout: at most 10, normalised, no duplicates after normalising.
pub fn coupon_codes(v: &mut Violations, field: &str, values: &[String]) -> Option<Vec<String>> {
    if values.len() > MAX_COUPON_CODES {
        v.push(field, format!("at most {MAX_COUPON_CODES} coupon codes"));
        return None;
    }
    let mut ok = true;
    let mut codes: Vec<String> = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let code_field = format!("{field}[{i}]");
        match coupon_code(v, &code_field, value) {
            Some(code) if codes.contains(&code) => {
                v.push(code_field, format!("duplicate coupon code {code}"));
                ok = false;
            }
            Some(code) => codes.push(code),
            None => ok = false,
        }
    }
    ok.then_some(codes)
}

// ---------------------------------------------------------------------------------------------
// Timestamps

/// An instant from a `google.protobuf.Timestamp` within the protobuf range.
pub fn instant(v: &mut Violations, field: &str, timestamp: &Timestamp) -> Option<DateTime<Utc>> {
    let in_range = (MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&timestamp.seconds)
        && (0..1_000_000_000).contains(&timestamp.nanos);
    let instant = in_range
        .then(|| u32::try_from(timestamp.nanos).ok())
        .flatten()
        .and_then(|nanos| DateTime::from_timestamp(timestamp.seconds, nanos));
    if instant.is_none() {
        v.push(field, "is not a valid timestamp (0001-01-01 to 9999-12-31)");
    }
    instant
}

/// An optional instant: `Some(None)` when unset, `None` when invalid (with a violation).
pub fn optional_instant(
    v: &mut Violations,
    field: &str,
    timestamp: Option<&Timestamp>,
) -> Option<Option<DateTime<Utc>>> {
    match timestamp {
        None => Some(None),
        Some(ts) => instant(v, field, ts).map(Some),
    }
}

pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or_default(),
    }
}

pub fn optional_timestamp(at: Option<DateTime<Utc>>) -> Option<Timestamp> {
    at.map(timestamp)
}

/// An IANA time zone name known to the tz database, such as "Asia/Tokyo"; empty means the
/// default. Checked here so that every local-time rule can rely on it.
pub fn time_zone(v: &mut Violations, field: &str, value: &str) -> Option<String> {
    if value.is_empty() {
        return Some(crate::domain::model::DEFAULT_TIME_ZONE.to_string());
    }
    match crate::domain::schedule::parse_time_zone(value) {
        Ok(_) => Some(value.to_string()),
        Err(error) => {
            v.push(field, error.to_string());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(line_id: &str, quantity: i32, amount: &str) -> proto::LineItem {
        proto::LineItem {
            line_id: line_id.into(),
            sku: "sku-1".into(),
            category: "food".into(),
            quantity,
            amount: amount.into(),
        }
    }

    fn fields(v: Violations) -> Vec<String> {
        v.into_vec().into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn a_good_basket_parses() {
        let mut v = Violations::new();
        let lines = basket(
            &mut v,
            "basket",
            Some(proto::Basket {
                lines: vec![line("a", 2, "1980.50"), line("b", 1, "20")],
            }),
        )
        .expect("valid");
        assert!(v.is_empty());
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].amount.to_string(), "1980.5");
    }

    #[test]
    fn a_bad_basket_names_every_bad_field() {
        let mut v = Violations::new();
        let parsed = basket(
            &mut v,
            "basket",
            Some(proto::Basket {
                lines: vec![
                    line("a", 1, "100"),
                    line("a", 0, "100"),
                    line("c", 1, "-5"),
                    line("d:e", 2_000_000, "1e3"),
                ],
            }),
        );
        assert!(parsed.is_none());
        assert_eq!(
            fields(v),
            [
                "basket.lines[1].line_id",
                "basket.lines[1].quantity",
                "basket.lines[2].amount",
                "basket.lines[3].line_id",
                "basket.lines[3].quantity",
                "basket.lines[3].amount",
            ]
        );
    }

    #[test]
    fn an_empty_or_missing_basket_is_refused() {
        let mut v = Violations::new();
        assert!(basket(&mut v, "basket", None).is_none());
        assert!(basket(&mut v, "basket", Some(proto::Basket { lines: vec![] })).is_none());
        assert_eq!(fields(v), ["basket.lines", "basket.lines"]);
    }

    #[test]
    fn basket_total_is_limited() {
        let mut v = Violations::new();
        let lines = vec![line("a", 1, "1000000000000"), line("b", 1, "1")];
        assert!(basket(&mut v, "basket", Some(proto::Basket { lines })).is_none());
        assert_eq!(fields(v), ["basket"]);
    }

    #[test]
    fn money_strings() {
        let mut v = Violations::new();
        assert_eq!(
            money(&mut v, "m", "1980.50").map(|m| m.to_string()),
            Some("1980.5".into())
        );
        assert_eq!(money(&mut v, "m", "0"), Some(Money::ZERO));
        assert!(v.is_empty());
        for bad in [
            "",
            "-1",
            "1e3",
            "abc",
            "1.00001",
            "1000000000001",
            " 1",
            "0x10",
        ] {
            let mut v = Violations::new();
            assert!(money(&mut v, "amount", bad).is_none(), "{bad:?}");
            assert_eq!(fields(v), ["amount"], "{bad:?}");
        }
        let mut v = Violations::new();
        assert!(positive_money(&mut v, "amount", "0").is_none());
        assert_eq!(money_or_zero(&mut v, "min", ""), Some(Money::ZERO));
        assert_eq!(fields(v), ["amount"]);
    }

    #[test]
    fn coupon_codes_are_normalised_and_deduplicated() {
        let mut v = Violations::new();
        let codes = coupon_codes(
            &mut v,
            "coupon_codes",
            &["abcd-2345".into(), "XY Z9".into()],
        );
        assert_eq!(
            codes,
            Some(vec!["ABCD2345".to_string(), "XYZ9".to_string()])
        );
        assert!(v.is_empty());

        let mut v = Violations::new();
        let codes = coupon_codes(
            &mut v,
            "coupon_codes",
            &[
                "abcd2345".into(),
                "ABCD-2345".into(),
                "--".into(),
                "ab!c".into(),
                "q".repeat(65),
            ],
        );
        assert!(codes.is_none());
        assert_eq!(
            fields(v),
            [
                "coupon_codes[1]",
                "coupon_codes[2]",
                "coupon_codes[3]",
                "coupon_codes[4]"
            ]
        );

        let mut v = Violations::new();
        let many: Vec<String> = (0..11).map(|i| format!("CODE{i}")).collect();
        assert!(coupon_codes(&mut v, "coupon_codes", &many).is_none());
        assert_eq!(fields(v), ["coupon_codes"]);
    }

    #[test]
    fn member_refs_and_identifiers() {
        let mut v = Violations::new();
        let by_id = proto::MemberRef {
            r#ref: Some(proto::member_ref::Ref::MemberId("m_123".into())),
        };
        assert_eq!(
            member_ref(&mut v, "member", Some(by_id)),
            Some(MemberRef::Id("m_123".into()))
        );
        assert!(v.is_empty());

        let bad = proto::MemberRef {
            r#ref: Some(proto::member_ref::Ref::Identifier(proto::Identifier {
                kind: "Card!".into(),
                value: String::new(),
            })),
        };
        assert!(member_ref(&mut v, "member", Some(bad)).is_none());
        assert!(member_ref(&mut v, "member", None).is_none());
        let merged = proto::MemberRef {
            r#ref: Some(proto::member_ref::Ref::MemberId("a:b".into())),
        };
        assert!(member_ref(&mut v, "member", Some(merged)).is_none());
        assert_eq!(
            fields(v),
            [
                "member.identifier.kind",
                "member.identifier.value",
                "member",
                "member.member_id"
            ]
        );
    }

    #[test]
    fn ids_and_request_ids() {
        let mut v = Violations::new();
        assert!(check_id(&mut v, "order_id", "order-1.A_b"));
        assert!(!check_id(&mut v, "order_id", ""));
        assert!(!check_id(&mut v, "order_id", "a:b"));
        assert!(!check_id(&mut v, "order_id", &"x".repeat(129)));
        assert!(check_optional_id(&mut v, "store_id", ""));
        assert!(check_request_id(&mut v, &"r".repeat(128)));
        assert!(!check_request_id(&mut v, ""));
        assert!(!check_request_id(&mut v, &"r".repeat(129)));
        assert_eq!(v.into_vec().len(), 5);
    }

    #[test]
    fn channels_must_be_specified() {
        let mut v = Violations::new();
        assert_eq!(channel(&mut v, "channel", 1), Some(Channel::Ec));
        assert!(channel(&mut v, "channel", 0).is_none());
        assert!(channel(&mut v, "channel", 42).is_none());
        assert_eq!(
            channels(&mut v, "channels", &[2, 2, 3]),
            Some(vec![Channel::Store, Channel::App])
        );
        assert!(channels(&mut v, "channels", &[1, 0]).is_none());
        assert_eq!(fields(v), ["channel", "channel", "channels[1]"]);
    }

    #[test]
    fn timestamps_round_trip_and_are_range_checked() {
        let at = DateTime::from_timestamp(1_700_000_000, 123_000_000).expect("valid");
        let mut v = Violations::new();
        assert_eq!(instant(&mut v, "at", &timestamp(at)), Some(at));
        let bad = Timestamp {
            seconds: 1,
            nanos: -1,
        };
        assert!(instant(&mut v, "at", &bad).is_none());
        assert_eq!(optional_instant(&mut v, "at", None), Some(None));
        assert_eq!(fields(v), ["at"]);
    }

    #[test]
    fn violations_build_only_when_clean() {
        let v = Violations::new();
        assert_eq!(v.build(|| Some(1)).expect("clean"), 1);
        let mut v = Violations::new();
        v.push("x", "bad");
        let status = v.build(|| Some(1)).expect_err("dirty");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
}
