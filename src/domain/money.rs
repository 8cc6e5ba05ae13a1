//! Money: a non-negative decimal amount in the program currency, carried as a decimal string on
//! the wire (never a float).

use std::{fmt, str::FromStr};

use rust_decimal::{Decimal, RoundingStrategy, prelude::ToPrimitive};
use serde::{Deserialize, Serialize};

/// Largest amount accepted anywhere (one trillion currency units): a limit on everything.
const MAX_AMOUNT: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0); // 1e12
/// Most fractional digits accepted on input.
pub const MAX_SCALE: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(#[serde(with = "rust_decimal::serde::str")] Decimal);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("must be a decimal number such as \"1980\" or \"1980.50\"")]
    NotADecimal,
    #[error("must not be negative")]
    Negative,
    #[error("at most {MAX_SCALE} fractional digits")]
    TooPrecise,
    #[error("must not exceed 1000000000000")]
    TooLarge,
}

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    pub fn new(amount: Decimal) -> Result<Self, MoneyError> {
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(MoneyError::Negative);
        }
        if amount > MAX_AMOUNT {
            return Err(MoneyError::TooLarge);
        }
        if amount.normalize().scale() > MAX_SCALE {
            return Err(MoneyError::TooPrecise);
        }
        Ok(Money(amount.normalize()))
    }

    /// Clamps a computed amount at zero (discounts never make a price negative).
    pub fn from_decimal_saturating(amount: Decimal) -> Self {
        Money(amount.max(Decimal::ZERO).normalize())
    }

    pub fn amount(self) -> Decimal {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    pub fn saturating_sub(self, other: Money) -> Money {
        Money::from_decimal_saturating(self.0 - other.0)
    }

    pub fn min(self, other: Money) -> Money {
        if self <= other { self } else { other }
    }

    /// Rounds down to the currency's minor unit (`exponent` fractional digits).
    pub fn floor_to(self, exponent: u32) -> Money {
        Money(
            self.0
                .round_dp_with_strategy(exponent, RoundingStrategy::ToZero)
                .normalize(),
        )
    }

    /// floor(self × rate) as whole points; saturates at `i64::MAX`.
    pub fn floor_points(self, rate: Decimal) -> i64 {
        self.0
            .checked_mul(rate)
            .and_then(|points| points.floor().to_i64())
            .unwrap_or(i64::MAX)
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money((self.0 + rhs.0).normalize())
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let plain = !s.is_empty()
            && s.len() <= 32
            && s.chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
            && s.chars().any(|c| c.is_ascii_digit());
        if !plain {
            return Err(MoneyError::NotADecimal);
        }
        let amount = Decimal::from_str_exact(s).map_err(|_| MoneyError::NotADecimal)?;
        Money::new(amount)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.normalize())
    }
}

/// Minor-unit exponent of an ISO 4217 currency (the rounding unit of amounts due).
pub fn currency_exponent(currency_code: &str) -> u32 {
    match currency_code {
        "JPY" | "KRW" | "VND" | "CLP" | "ISK" | "TWD" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_decimals_only() {
        assert_eq!("1980.50".parse::<Money>().unwrap().to_string(), "1980.5");
        assert_eq!("0".parse::<Money>().unwrap(), Money::ZERO);
        assert_eq!("-1".parse::<Money>(), Err(MoneyError::Negative));
        assert_eq!("abc".parse::<Money>(), Err(MoneyError::NotADecimal));
        assert_eq!("1e3".parse::<Money>(), Err(MoneyError::NotADecimal));
        assert_eq!("".parse::<Money>(), Err(MoneyError::NotADecimal));
        assert_eq!("1.00001".parse::<Money>(), Err(MoneyError::TooPrecise));
        assert_eq!("1000000000001".parse::<Money>(), Err(MoneyError::TooLarge));
        assert!("1000000000000".parse::<Money>().is_ok());
    }

    #[test]
    fn floors_points_and_minor_units() {
        let paid: Money = "1999".parse().unwrap();
        assert_eq!(paid.floor_points(Decimal::new(1, 2)), 19);
        let odd: Money = "10.999".parse().unwrap();
        assert_eq!(odd.floor_to(2).to_string(), "10.99");
        assert_eq!(odd.floor_to(0).to_string(), "10");
    }
}
