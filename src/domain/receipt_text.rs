//! Parses the raw text of a photographed receipt (issue #10), Japanese or English, into its total,
//! the time it was issued and its product lines. Used when a receipt arrives with `raw_text` but
//! no lines. Pure: no clock, no I/O; the time is returned as printed (local to the store).
//!
//! The total is only ever read from the receipt (合計 / TOTAL, or 小計 plus the tax it prints);
//! when it cannot be found the receipt is refused rather than guessed.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use rust_decimal::Decimal;

use super::money::Money;

/// Largest receipt text accepted, in bytes (a long supermarket receipt is a few KiB).
pub const MAX_BYTES: usize = 16 * 1024;
/// Most lines accepted.
pub const MAX_LINES: usize = 200;
/// Largest quantity read from `x2` / `2点` notation; anything larger is part of the name.
const MAX_QUANTITY: i32 = 9999;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedReceipt {
    /// The amount due as printed (合計 / TOTAL), tax included.
    pub total: Money,
    /// Local time as printed; the caller applies the store's zone. Midnight when only a date is
    /// printed.
    pub issued_at: Option<NaiveDateTime>,
    /// Product lines only: not totals, tax, discounts, change or payment lines.
    pub lines: Vec<ParsedLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedLine {
    pub name: String,
    pub quantity: i32,
    /// The line amount as printed (quantity × unit price).
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("no total (合計 / TOTAL) found on the receipt")]
    NoTotal,
    #[error("receipt text is longer than {MAX_BYTES} bytes or {MAX_LINES} lines")]
    TooLong,
    #[error("the total printed on the receipt is not a valid amount")]
    InvalidTotal,
}

pub fn parse(text: &str) -> Result<ParsedReceipt, ParseError> {
    if text.len() > MAX_BYTES || text.lines().count() > MAX_LINES {
        return Err(ParseError::TooLong);
    }
    let mut receipt = Accumulator::default();
    for raw in text.lines() {
        receipt.take(&normalize(raw));
    }
    receipt.finish()
}

/// What one line with an amount means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Total,
    Subtotal,
    ExclusiveTax,
    InclusiveTax,
    Discount,
    Ignored,
    Product,
}

#[derive(Default)]
struct Accumulator {
    issued_at: Option<NaiveDateTime>,
    total: Option<Decimal>,
    subtotal: Option<Decimal>,
    exclusive_tax: Option<Decimal>,
    saw_inclusive_tax: bool,
    /// Discounts printed after the 小計 line: the subtotal does not include them yet.
    discount_after_subtotal: Decimal,
    lines: Vec<ParsedLine>,
}

impl Accumulator {
    fn take(&mut self, line: &str) {
        // A line carrying the date is a header, never an amount line (its time looks numeric).
        if let Some(at) = find_datetime(line) {
            self.issued_at.get_or_insert(at);
            return;
        }
        let Some((label, amount)) = split_amount(line) else {
            return;
        };
        match classify(label, amount) {
            // The last total wins: 税抜合計 … 税込合計 prints the amount due last.
            Kind::Total => self.total = Some(amount),
            Kind::Subtotal => {
                self.subtotal = Some(amount);
                self.discount_after_subtotal = Decimal::ZERO;
            }
            Kind::ExclusiveTax => {
                self.exclusive_tax = Some(self.exclusive_tax.unwrap_or_default() + amount)
            }
            Kind::InclusiveTax => self.saw_inclusive_tax = true,
            Kind::Discount if self.subtotal.is_some() => {
                self.discount_after_subtotal += amount.abs()
            }
            Kind::Discount | Kind::Ignored => {}
            Kind::Product => self.lines.extend(product_line(label, amount)),
        }
    }

    fn finish(self) -> Result<ParsedReceipt, ParseError> {
        let total = self
            .total
            .or_else(|| self.fallback_total())
            .ok_or(ParseError::NoTotal)?;
        Ok(ParsedReceipt {
            total: Money::new(total).map_err(|_| ParseError::InvalidTotal)?,
            issued_at: self.issued_at,
            lines: self.lines,
        })
    }

    /// Without a 合計 line the total is still printed piecewise: 小計 plus the 外税 tax, or 小計
    /// alone when a 内税 line says the tax is already in it. A bare 小計 proves nothing.
    fn fallback_total(&self) -> Option<Decimal> {
        let subtotal = self.subtotal? - self.discount_after_subtotal;
        match (self.exclusive_tax, self.saw_inclusive_tax) {
            (Some(tax), _) => Some(subtotal + tax),
            (None, true) => Some(subtotal),
            (None, false) => None,
        }
    }
}

/// Folds full-width ASCII (０-９, ，, ．, Ａ-Ｚ, －) to ASCII and every yen sign to `¥`, so the
/// rest of the parser sees one alphabet.
fn normalize(raw: &str) -> String {
    raw.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' | '\t' => ' ',
            '\u{2212}' => '-',
            _ => c,
        })
        .map(|c| if matches!(c, '￥' | '\\') { '¥' } else { c })
        .collect()
}

fn is_numeric(c: char) -> bool {
    c.is_ascii_digit() || c == ',' || c == '.'
}

/// Splits `label amount` at the amount that ends the line (`¥1,080`, `-¥100`, `360円`,
/// `(8%対象 ¥1,080)`). The amount must stand apart from the label (a space or `¥` before it), so
/// times (`14:05`), phone numbers (`03-1234-5678`) and receipt numbers (`No.123`) are not read.
fn split_amount(line: &str) -> Option<(&str, Decimal)> {
    let mut rest = line.trim_end();
    for suffix in [')', '円', '※', '*', '軽'] {
        rest = rest.strip_suffix(suffix).unwrap_or(rest).trim_end();
    }
    let start = rest
        .char_indices()
        .rev()
        .find(|&(_, c)| !is_numeric(c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let number = &rest[start..];
    if !number.starts_with(|c: char| c.is_ascii_digit())
        || !number.ends_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    let (head, negative, yen) = strip_sign_and_yen(&rest[..start]);
    if !(yen || head.is_empty() || head.ends_with(' ')) {
        return None;
    }
    let value = Decimal::from_str_exact(&number.replace(',', "")).ok()?;
    Some((head.trim(), if negative { -value } else { value }))
}

/// Strips `¥`, `-`, `-¥` or `¥-` from the end of `head`: (rest, negative, had a yen sign).
fn strip_sign_and_yen(mut head: &str) -> (&str, bool, bool) {
    let (mut negative, mut yen) = (false, false);
    for _ in 0..2 {
        if let Some(h) = head.strip_suffix('¥') {
            (head, yen) = (h, true);
        } else if let Some(h) = head.strip_suffix('-') {
            (head, negative) = (h, true);
        }
    }
    (head, negative, yen)
}

/// Japanese keywords match anywhere; English ones only as whole words, so `COFFEE` is not `OFF`
/// and `TAXI` is not `TAX`.
fn contains_any(label: &str, words: &[&str]) -> bool {
    words.iter().any(|word| {
        if !word.is_ascii() {
            return label.contains(word);
        }
        label.match_indices(word).any(|(i, _)| {
            let letter = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphabetic());
            !letter(label[..i].chars().next_back())
                && !letter(label[i + word.len()..].chars().next())
        })
    })
}

/// Payment, change, points and tax-base lines: they carry amounts that are not the total.
const IGNORED: &[&str] = &[
    "お釣",
    "おつり",
    "釣銭",
    "お預",
    "預り",
    "預かり",
    "現金",
    "クレジット",
    "電子マネー",
    "ポイント",
    "対象",
    "点数",
    "TEL",
    "電話",
    "CHANGE",
    "CASH",
    "TENDER",
    "CARD",
    "VISA",
    "CREDIT",
    "DEBIT",
    "POINT",
    "ITEMS",
    "SAVING",
    "SAVED",
];
const PRE_TAX: &[&str] = &["小計", "税抜", "税別", "SUBTOTAL", "SUB TOTAL", "SUB-TOTAL"];
const TOTAL: &[&str] = &[
    "合計",
    "総計",
    "お買上計",
    "請求",
    "TOTAL",
    "AMOUNT DUE",
    "BALANCE DUE",
];
const TAX: &[&str] = &["税", "TAX", "VAT", "GST"];
const INCLUDED: &[&str] = &["内", "INCL", "INCLUDED"];
const DISCOUNT: &[&str] = &[
    "値引",
    "割引",
    "値下",
    "クーポン",
    "DISCOUNT",
    "COUPON",
    "OFF",
];

/// Order matters: `SUBTOTAL` contains `TOTAL`, `外税対象` contains `税`, `税込合計` contains `税`.
fn classify(label: &str, amount: Decimal) -> Kind {
    let label = label.to_uppercase();
    if contains_any(&label, IGNORED) {
        Kind::Ignored
    } else if contains_any(&label, PRE_TAX) {
        Kind::Subtotal
    } else if contains_any(&label, TOTAL) {
        Kind::Total
    } else if label.contains("税込") {
        // "(税込 ¥1,080)" restates a price; it is not the amount due.
        Kind::Ignored
    } else if contains_any(&label, TAX) {
        if contains_any(&label, INCLUDED) {
            Kind::InclusiveTax
        } else {
            Kind::ExclusiveTax
        }
    } else if amount.is_sign_negative() || contains_any(&label, DISCOUNT) {
        Kind::Discount
    } else {
        Kind::Product
    }
}

fn product_line(label: &str, amount: Decimal) -> Option<ParsedLine> {
    let (name, quantity) = split_quantity(label);
    // A unit-price line on its own ("@300 x 2") or a bare number is not a product.
    if name.starts_with('@') || !name.chars().any(char::is_alphabetic) {
        return None;
    }
    Some(ParsedLine {
        name: name.to_string(),
        quantity,
        amount: Money::new(amount).ok()?,
    })
}

/// Splits a trailing digit run off `s`: (head, digits).
fn trailing_digits(s: &str) -> (&str, &str) {
    let start = s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    s.split_at(start)
}

fn quantity_of(digits: &str) -> Option<i32> {
    digits
        .parse::<i32>()
        .ok()
        .filter(|q| (1..=MAX_QUANTITY).contains(q))
}

/// Reads `x2`, `×2`, `* 2`, `@300 x 2`, `2点` / `2個` / `2コ` at the end of a label;
/// quantity 1 when none is printed.
fn split_quantity(label: &str) -> (&str, i32) {
    let label = label.trim_end();
    let (head, digits) = trailing_digits(label);
    if let Some(quantity) = quantity_of(digits) {
        let head = head.trim_end();
        let Some(name) = head.strip_suffix(['x', 'X', '×', '*']) else {
            return (label, 1);
        };
        // "MAX2" is a name, "コーラx2" and "MUG x2" are quantities.
        if name.ends_with(|c: char| c.is_ascii_alphanumeric()) {
            return (label, 1);
        }
        return (strip_unit_price(name.trim_end()), quantity);
    }
    for counter in ['点', '個', 'コ'] {
        let Some(head) = label.strip_suffix(counter) else {
            continue;
        };
        let (name, digits) = trailing_digits(head);
        if let Some(quantity) = quantity_of(digits)
            && (name.is_empty() || name.ends_with(' '))
        {
            return (name.trim_end(), quantity);
        }
    }
    (label, 1)
}

/// Drops a trailing `@300` / `@¥300` unit price from a name.
fn strip_unit_price(name: &str) -> &str {
    match name.rsplit_once(' ') {
        Some((head, last)) if last.starts_with('@') => head.trim_end(),
        _ => name,
    }
}

/// The first date on the line (`2026年11月22日`, `2026/11/22`, `2026-11-22`, `11/22/2026`) with
/// the first time after it (`14:05`, `14:05:33`, `2:05 PM`, `14時05分`), midnight without one.
fn find_datetime(line: &str) -> Option<NaiveDateTime> {
    let chars: Vec<char> = line.chars().collect();
    (0..chars.len()).find_map(|i| {
        if i > 0 && chars[i - 1].is_ascii_digit() {
            return None;
        }
        let (date, end) = date_at(&chars, i)?;
        Some(date.and_time(time_in(&chars[end..]).unwrap_or(NaiveTime::MIN)))
    })
}

/// Reads 1 to 4 ASCII digits at `i`: (value, digit count, index after).
fn number_at(c: &[char], i: usize) -> Option<(u32, usize, usize)> {
    let len = c
        .get(i..)?
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if !(1..=4).contains(&len) {
        return None;
    }
    let value = c[i..i + len].iter().collect::<String>().parse().ok()?;
    Some((value, len, i + len))
}

fn date_at(c: &[char], i: usize) -> Option<(NaiveDate, usize)> {
    let (a, a_len, i) = number_at(c, i)?;
    let sep = *c.get(i)?;
    if !matches!(sep, '/' | '-' | '.' | '年') {
        return None;
    }
    let (b, _, i) = number_at(c, i + 1)?;
    let second = if sep == '年' { '月' } else { sep };
    if c.get(i) != Some(&second) {
        return None;
    }
    let (d, d_len, mut end) = number_at(c, i + 1)?;
    if sep == '年' && c.get(end) == Some(&'日') {
        end += 1;
    }
    let date = match (a_len, d_len, sep) {
        (4, _, _) => NaiveDate::from_ymd_opt(i32::try_from(a).ok()?, b, d),
        // US order, only with slashes: 11/22/2026.
        (_, 4, '/') => NaiveDate::from_ymd_opt(i32::try_from(d).ok()?, a, b),
        _ => None,
    }?;
    Some((date, end))
}

fn time_in(c: &[char]) -> Option<NaiveTime> {
    (0..c.len()).find_map(|i| {
        if i > 0 && c[i - 1].is_ascii_digit() {
            return None;
        }
        time_at(c, i)
    })
}

fn time_at(c: &[char], i: usize) -> Option<NaiveTime> {
    let (hour, hour_len, i) = number_at(c, i)?;
    let sep = *c.get(i)?;
    if hour_len > 2 || !matches!(sep, ':' | '時') {
        return None;
    }
    let (minute, minute_len, mut end) = number_at(c, i + 1)?;
    if minute_len != 2 {
        return None;
    }
    let mut second = 0;
    if sep == ':' && c.get(end) == Some(&':') {
        let (s, s_len, after) = number_at(c, end + 1)?;
        if s_len != 2 {
            return None;
        }
        (second, end) = (s, after);
    }
    NaiveTime::from_hms_opt(twelve_hour(hour, &c[end..])?, minute, second)
}

/// Applies a trailing AM/PM marker to a 12-hour clock reading.
fn twelve_hour(hour: u32, rest: &[char]) -> Option<u32> {
    let marker: String = rest
        .iter()
        .skip_while(|c| c.is_whitespace())
        .take(2)
        .collect::<String>()
        .to_uppercase();
    let twelve = (1..=12).contains(&hour);
    match marker.as_str() {
        "AM" => twelve.then_some(hour % 12),
        "PM" => twelve.then_some(hour % 12 + 12),
        _ => Some(hour),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(s: &str) -> Money {
        s.parse().unwrap()
    }

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> Option<NaiveDateTime> {
        NaiveDate::from_ymd_opt(y, m, d).and_then(|date| date.and_hms_opt(h, min, s))
    }

    /// (name, quantity, amount) of every product line.
    fn lines(receipt: &ParsedReceipt) -> Vec<(&str, i32, String)> {
        receipt
            .lines
            .iter()
            .map(|l| (l.name.as_str(), l.quantity, l.amount.to_string()))
            .collect()
    }

    #[test]
    fn japanese_tax_inclusive_with_change() {
        let text = "ファミリーマート 渋谷店
2026年11月22日(日) 14:05
レジ0002 責No.123
TEL 03-1234-5678
おにぎり 鮭           ¥150
お茶 500ml            ¥140
からあげ 2個          ¥460
小計                  ¥750
(8%対象 ¥750)
(内消費税 8% ¥55)
合計                  ¥750
お預り                ¥1,000
お釣り                ¥250";
        let r = parse(text).unwrap();
        assert_eq!(r.total, money("750"));
        assert_eq!(r.issued_at, at(2026, 11, 22, 14, 5, 0));
        assert_eq!(
            lines(&r),
            [
                ("おにぎり 鮭", 1, "150".into()),
                ("お茶 500ml", 1, "140".into()),
                ("からあげ", 2, "460".into()),
            ]
        );
    }

    #[test]
    fn japanese_tax_exclusive_total_is_the_goukei_line() {
        let text = "ホームセンター ABC
2026/11/22 10:30
電球 LED        1,280
ガムテープ x3     594
小計            1,874
外税 10%          187
合計            2,061
クレジット      2,061";
        let r = parse(text).unwrap();
        assert_eq!(r.total, money("2061"));
        assert_eq!(r.issued_at, at(2026, 11, 22, 10, 30, 0));
        assert_eq!(
            lines(&r),
            [
                ("電球 LED", 1, "1280".into()),
                ("ガムテープ", 3, "594".into())
            ]
        );
    }

    #[test]
    fn japanese_tax_exclusive_without_goukei_adds_the_tax() {
        let text = "八百屋 みどり
2026年11月22日
キャベツ     ¥300
トマト x2    ¥700
小計       ¥1,000
外税(8%)     ¥80";
        let r = parse(text).unwrap();
        assert_eq!(r.total, money("1080"));
        assert_eq!(r.issued_at, at(2026, 11, 22, 0, 0, 0));
        assert_eq!(r.lines.len(), 2);
    }

    #[test]
    fn english_tax_exclusive_with_cash_and_change() {
        let text = "CORNER MARKET
11/22/2026 2:05 PM
MILK 1GAL        3.49
BREAD            2.99
APPLES @0.50 x 4 2.00
SUBTOTAL         8.48
TAX 10%          0.85
TOTAL            9.33
CASH            20.00
CHANGE          10.67";
        let r = parse(text).unwrap();
        assert_eq!(r.total, money("9.33"));
        assert_eq!(r.issued_at, at(2026, 11, 22, 14, 5, 0));
        assert_eq!(
            lines(&r),
            [
                ("MILK 1GAL", 1, "3.49".into()),
                ("BREAD", 1, "2.99".into()),
                ("APPLES", 4, "2".into()),
            ]
        );
    }

    #[test]
    fn english_with_discount_line() {
        let text = "BEAN & CUP
2026-11-22 14:05:33
COFFEE BEANS     ¥1,200
MUG x2           ¥1,600
DISCOUNT        -¥100
SUBTOTAL         ¥2,700
TAX INCL. 10%    ¥245
TOTAL            ¥2,700
VISA             ¥2,700";
        let r = parse(text).unwrap();
        assert_eq!(r.total, money("2700"));
        assert_eq!(r.issued_at, at(2026, 11, 22, 14, 5, 33));
        assert_eq!(
            lines(&r),
            [
                ("COFFEE BEANS", 1, "1200".into()),
                ("MUG", 2, "1600".into())
            ]
        );
    }

    #[test]
    fn full_width_digits_and_discount() {
        let text = "スーパー　さくら
２０２６年１１月２２日　１４：０５
牛乳　　　　　　￥２３８
食パン　　　　　￥１９８
値引　　　　　　－１００
合計　　　　　　￥３３６
お預り　　　　　￥１，０００
お釣り　　　　　￥６６４";
        let r = parse(text).unwrap();
        assert_eq!(r.total, money("336"));
        assert_eq!(r.issued_at, at(2026, 11, 22, 14, 5, 0));
        assert_eq!(
            lines(&r),
            [("牛乳", 1, "238".into()), ("食パン", 1, "198".into())]
        );
    }

    #[test]
    fn yen_suffix_counters_and_unit_prices() {
        let text = "カフェ ひなた
2026年11月22日 9時15分
ドーナツ 2点 360円
コーヒー @300 x 2 600円
合計(税込) 960円
(内税 10% 87円)";
        let r = parse(text).unwrap();
        assert_eq!(r.total, money("960"));
        assert_eq!(r.issued_at, at(2026, 11, 22, 9, 15, 0));
        assert_eq!(
            lines(&r),
            [("ドーナツ", 2, "360".into()), ("コーヒー", 2, "600".into())]
        );
    }

    #[test]
    fn japanese_tax_base_lines_are_not_products() {
        let text = "ドラッグストア
2026/11/22 18:40
洗剤            ¥398
ヨーグルト ×2   ¥280
(8%対象 ¥280)
(10%対象 ¥398)
内消費税 8% ¥20
内消費税 10% ¥36
税込合計        ¥678
電子マネー      ¥678";
        let r = parse(text).unwrap();
        assert_eq!(r.total, money("678"));
        assert_eq!(r.issued_at, at(2026, 11, 22, 18, 40, 0));
        assert_eq!(
            lines(&r),
            [("洗剤", 1, "398".into()), ("ヨーグルト", 2, "280".into())]
        );
    }

    #[test]
    fn subtotal_and_inclusive_tax_without_total_is_the_subtotal() {
        let text = "2026-11-22
パン ¥250
小計 ¥250
(内税 ¥18)";
        let r = parse(text).unwrap();
        assert_eq!(r.total, money("250"));
        assert_eq!(r.issued_at, at(2026, 11, 22, 0, 0, 0));
        assert_eq!(r.lines.len(), 1);
    }

    #[test]
    fn full_width_english_decimals() {
        let text = "ＤＥＬＩ
２０２６／１１／２２　１２：００
ＳＡＮＤＷＩＣＨ　　８．５０
ＳＯＤＡ　　　　　　２．００
ＴＯＴＡＬ　　　　１０．５０
ＣＡＳＨ　　　　　２０．００
ＣＨＡＮＧＥ　　　　９．５０";
        let r = parse(text).unwrap();
        assert_eq!(r.total, money("10.5"));
        assert_eq!(r.issued_at, at(2026, 11, 22, 12, 0, 0));
        assert_eq!(
            lines(&r),
            [("SANDWICH", 1, "8.5".into()), ("SODA", 1, "2".into())]
        );
    }

    #[test]
    fn subtotal_discount_and_exclusive_tax_without_total() {
        let text = "BOOKS & CO
NOTEBOOK  ¥500
PEN x3    ¥300
SUBTOTAL  ¥800
COUPON   -¥100
TAX 10%   ¥70";
        let r = parse(text).unwrap();
        assert_eq!(r.total, money("770"));
        assert_eq!(r.issued_at, None);
        assert_eq!(r.lines.len(), 2);
    }

    #[test]
    fn tendered_and_change_are_never_the_total() {
        let text = "2026/11/22 08:00
おにぎり ¥150
お預り ¥10,000
お釣り ¥9,850";
        assert_eq!(parse(text), Err(ParseError::NoTotal));
    }

    #[test]
    fn a_bare_subtotal_is_not_a_total() {
        let text = "MILK 3.49\nSUBTOTAL 3.49\nCASH 5.00\nCHANGE 1.51";
        assert_eq!(parse(text), Err(ParseError::NoTotal));
        assert_eq!(parse(""), Err(ParseError::NoTotal));
    }

    #[test]
    fn refuses_too_long_input() {
        let many_lines = "ガム ¥100\n".repeat(MAX_LINES) + "合計 ¥20,000";
        assert_eq!(parse(&many_lines), Err(ParseError::TooLong));
        let wide = format!("合計 ¥100 {}", " ".repeat(MAX_BYTES));
        assert_eq!(parse(&wide), Err(ParseError::TooLong));
        let just_fits = "ガム ¥100\n".repeat(MAX_LINES - 1) + "合計 ¥19,900";
        assert_eq!(parse(&just_fits).unwrap().lines.len(), MAX_LINES - 1);
    }

    #[test]
    fn a_negative_total_is_invalid() {
        assert_eq!(parse("合計 -¥100"), Err(ParseError::InvalidTotal));
    }

    #[test]
    fn amounts_must_stand_apart_from_the_label() {
        assert_eq!(split_amount("TEL 03-1234-5678"), None);
        assert_eq!(split_amount("責No.123"), None);
        assert_eq!(split_amount("14:05"), None);
        assert_eq!(split_amount("税率 10%"), None);
        assert_eq!(
            split_amount("合計¥1,080"),
            Some(("合計", Decimal::new(1080, 0)))
        );
        assert_eq!(
            split_amount("値引 ¥-100"),
            Some(("値引", Decimal::new(-100, 0)))
        );
    }

    #[test]
    fn quantity_notation() {
        assert_eq!(split_quantity("MAX2"), ("MAX2", 1));
        assert_eq!(split_quantity("コーラx2"), ("コーラ", 2));
        assert_eq!(split_quantity("TEA @¥150 × 3"), ("TEA", 3));
        assert_eq!(split_quantity("みかん 3コ"), ("みかん", 3));
        assert_eq!(split_quantity("ROOM 101"), ("ROOM 101", 1));
    }

    #[test]
    fn english_keywords_match_whole_words() {
        let one = Decimal::ONE;
        assert_eq!(classify("COFFEE", one), Kind::Product);
        assert_eq!(classify("TAXI RIDE", one), Kind::Product);
        assert_eq!(classify("10% OFF", one), Kind::Discount);
        assert_eq!(classify("SUB-TOTAL", one), Kind::Subtotal);
        assert_eq!(classify("GRAND TOTAL", one), Kind::Total);
        assert_eq!(classify("VAT INCLUDED", one), Kind::InclusiveTax);
    }
}
