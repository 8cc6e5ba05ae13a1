//! Keyset pages over a list kept in a fixed order: a page is the items strictly after the last
//! one the client saw, so an insert or a delete between two calls neither repeats nor skips an
//! item that was there before and after.

use chrono::{DateTime, Utc};

/// Where a page ends: the sort key of its last item. Lists ordered by id alone leave `at` unset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub at: Option<DateTime<Utc>>,
    pub id: String,
}

/// One page of a list, and the cursor of the next page (None on the last page).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

/// The page of at most `size` items after `after`, out of `items` sorted by `key` ascending.
pub fn page_after<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> Cursor,
    after: Option<&Cursor>,
    size: usize,
) -> Page<T> {
    let mut rest = items
        .into_iter()
        .filter(|item| after.is_none_or(|after| key(item) > *after));
    let items: Vec<T> = rest.by_ref().take(size.max(1)).collect();
    let next = match rest.next() {
        Some(_) => items.last().map(&key),
        None => None,
    };
    Page { items, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_id(id: &&str) -> Cursor {
        Cursor {
            at: None,
            id: id.to_string(),
        }
    }

    #[test]
    fn pages_walk_the_whole_list_once() {
        let items = vec!["a", "b", "c", "d", "e"];
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = page_after(items.clone(), by_id, after.as_ref(), 2);
            seen.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, items);
    }

    #[test]
    fn a_full_last_page_has_no_next_page() {
        let page = page_after(vec!["a", "b"], by_id, None, 2);
        assert_eq!(page.items, ["a", "b"]);
        assert!(page.next.is_none());
        let gone = page_after(vec!["a", "c"], by_id, Some(&by_id(&"b")), 2);
        assert_eq!(gone.items, ["c"], "a removed cursor item skips nothing");
    }
}
