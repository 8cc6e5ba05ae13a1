//! page_size and page_token of the List RPCs that page by key (ListStores, ListCampaigns,
//! ListCoupons). A token is opaque to clients: the hex of the last item's sort key, which the
//! next call resumes after (`domain::page`).

use chrono::DateTime;

use super::convert::Violations;
use crate::domain::page::Cursor;

/// Page size when the request gives none.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Largest page size.
pub const MAX_PAGE_SIZE: i32 = 500;
/// Longest page token accepted (an id of at most 128 characters and a timestamp, in hex).
const MAX_TOKEN_CHARS: usize = 512;

/// 0 means the default (50); at most 500.
pub fn page_size(v: &mut Violations, page_size: i32) -> Option<usize> {
    match page_size {
        0 => Some(DEFAULT_PAGE_SIZE),
        1..=MAX_PAGE_SIZE => usize::try_from(page_size).ok(),
        _ => {
            v.push(
                "page_size",
                format!("must be between 0 and {MAX_PAGE_SIZE}"),
            );
            None
        }
    }
}

/// Empty for the first page, else a `next_page_token` given out by the same RPC.
pub fn page_token(v: &mut Violations, rpc: &str, token: &str) -> Option<Option<Cursor>> {
    if token.is_empty() {
        return Some(None);
    }
    let cursor = (token.len() <= MAX_TOKEN_CHARS)
        .then(|| hex::decode(token).ok())
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| decode(&text));
    if cursor.is_none() {
        v.push(
            "page_token",
            format!("is not a page token returned by {rpc}"),
        );
    }
    cursor.map(Some)
}

/// The token of the page after `cursor`; empty on the last page.
pub fn next_page_token(cursor: Option<Cursor>) -> String {
    cursor.map_or_else(String::new, |cursor| {
        let at = cursor
            .at
            .and_then(|at| at.timestamp_nanos_opt())
            .map_or_else(|| "-".to_string(), |nanos| nanos.to_string());
        hex::encode(format!("{at}:{}", cursor.id))
    })
}

fn decode(text: &str) -> Option<Cursor> {
    let (at, id) = text.split_once(':')?;
    if id.is_empty() {
        return None;
    }
    let at = match at {
        "-" => None,
        nanos => Some(DateTime::from_timestamp_nanos(nanos.parse::<i64>().ok()?)),
    };
    Some(Cursor {
        at,
        id: id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_a_violation() {
        let cursor = Cursor {
            at: DateTime::from_timestamp(1_775_000_000, 123_456_000),
            id: "spring:sale".into(),
        };
        let token = next_page_token(Some(cursor.clone()));
        let mut v = Violations::new();
        assert_eq!(page_token(&mut v, "ListX", &token), Some(Some(cursor)));
        let by_id = Cursor {
            at: None,
            id: "shibuya".into(),
        };
        let token = next_page_token(Some(by_id.clone()));
        assert_eq!(page_token(&mut v, "ListX", &token), Some(Some(by_id)));
        assert!(v.is_empty());
        assert_eq!(next_page_token(None), "");
        for bad in ["zz", "3a", &hex::encode("x:1"), &hex::encode("-:")] {
            let mut v = Violations::new();
            assert_eq!(page_token(&mut v, "ListX", bad), None, "{bad}");
            assert_eq!(v.into_vec()[0].field, "page_token");
        }
    }
}
