//! Rule timing in a store's local time: IANA time zones, daily hour windows, days of the week,
//! and the local calendar date of an instant (daily caps, one visit per local date).
//!
//! Wall-clock rules ("10:00–20:00 on weekdays") are evaluated on the store's local clock, so an
//! instant is converted to the store's zone first; converting that way is never ambiguous, even
//! across daylight-saving changes.

use std::str::FromStr;

use chrono::{
    DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Most `active_hours` windows on one rule.
pub const MAX_ACTIVE_HOURS: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("must be an IANA time zone name such as \"Asia/Tokyo\"")]
    UnknownTimeZone,
    #[error("must be a time of day \"HH:MM\" (00:00 to 23:59)")]
    BadTimeOfDay,
    #[error("start and end must differ (a window may cross midnight: end before start)")]
    EmptyWindow,
    #[error("must be a day of the week from 1 (Monday) to 7 (Sunday), got {0}")]
    DayOutOfRange(i64),
}

/// An IANA time zone by its exact name ("Asia/Tokyo", "UTC"); case and aliases as in the tz
/// database.
pub fn parse_time_zone(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name).map_err(|_| ScheduleError::UnknownTimeZone)
}

/// The local calendar date of an instant in a zone: the day of daily caps and of visits.
pub fn local_date(at: DateTime<Utc>, tz: Tz) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// The local wall-clock date and time of an instant in a zone.
pub fn local_date_time(at: DateTime<Utc>, tz: Tz) -> NaiveDateTime {
    at.with_timezone(&tz).naive_local()
}

/// The instant a wall-clock reading in a zone names (a time printed on a receipt). A reading
/// the clocks passed twice (autumn) is the first of the two; one they skipped (spring) is read
/// as standard time, i.e. the instant an hour later on the new clock.
pub fn instant_of_local(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    use chrono::{LocalResult, TimeZone};
    match tz.from_local_datetime(&local) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.with_timezone(&Utc),
        LocalResult::None => {
            use chrono::Offset;
            let offset = tz.offset_from_utc_datetime(&local).fix().local_minus_utc();
            (local - chrono::Duration::seconds(offset.into())).and_utc()
        }
    }
}

/// The first instant of a local day in `tz`: local midnight, or, where a daylight-saving jump
/// skips midnight (America/Santiago, America/Havana), the instant of the jump. Of a midnight
/// that happens twice (a fall-back at midnight), the first.
pub fn local_day_start(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = day.and_time(NaiveTime::MIN);
    // In a gap the day begins at the first local time that exists; every transition of the tz
    // database falls on a quarter hour, and none skips more than two hours.
    (0..=8)
        .map(|quarters| midnight + TimeDelta::minutes(15 * quarters))
        .find_map(|local| tz.from_local_datetime(&local).earliest())
        .map(|start| start.with_timezone(&Utc))
        // Not reached with the tz database; midnight read as UTC is the nearest sane answer.
        .unwrap_or_else(|| midnight.and_utc())
}

/// The first instant of the local date of `at` in a zone.
pub fn start_of_local_day(at: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    local_day_start(local_date(at, tz), tz)
}

/// A time of day written "HH:MM" (two digits each, 00:00 to 23:59). "24:00" is not accepted: a
/// window that ends at midnight ends at "00:00".
pub fn parse_time_of_day(text: &str) -> Result<NaiveTime, ScheduleError> {
    let bytes = text.as_bytes();
    let well_formed = bytes.len() == 5
        && bytes[2] == b':'
        && [0, 1, 3, 4].iter().all(|&i| bytes[i].is_ascii_digit());
    if !well_formed {
        return Err(ScheduleError::BadTimeOfDay);
    }
    let hour = u32::from(bytes[0] - b'0') * 10 + u32::from(bytes[1] - b'0');
    let minute = u32::from(bytes[3] - b'0') * 10 + u32::from(bytes[4] - b'0');
    NaiveTime::from_hms_opt(hour, minute, 0).ok_or(ScheduleError::BadTimeOfDay)
}

/// "HH:MM" of a time of day (seconds dropped; windows are whole minutes).
pub fn format_time_of_day(time: NaiveTime) -> String {
    format!("{:02}:{:02}", time.hour(), time.minute())
}

/// A daily window of local time, `start` inclusive and `end` exclusive. When `end` is before
/// `start` the window crosses midnight ("22:00"–"02:00"). `start == end` is refused rather than
/// read as "all day" or "never": an empty `active_hours` already means all day, and one meaning
/// per spelling is what an admin can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoursWindow {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl HoursWindow {
    pub fn parse(start: &str, end: &str) -> Result<Self, ScheduleError> {
        Self::new(parse_time_of_day(start)?, parse_time_of_day(end)?)
    }

    pub fn new(start: NaiveTime, end: NaiveTime) -> Result<Self, ScheduleError> {
        if start == end {
            Err(ScheduleError::EmptyWindow)
        } else {
            Ok(Self { start, end })
        }
    }

    pub fn crosses_midnight(&self) -> bool {
        self.end < self.start
    }

    /// The local date on which the window holding `local` opened, if one does: today for a
    /// time after `start`, yesterday for the early-morning part of a window across midnight.
    fn opened_on(&self, local: NaiveDateTime) -> Option<NaiveDate> {
        let (date, time) = (local.date(), local.time());
        if !self.crosses_midnight() {
            (self.start <= time && time < self.end).then_some(date)
        } else if time >= self.start {
            Some(date)
        } else if time < self.end {
            date.pred_opt()
        } else {
            None
        }
    }
}

/// A set of ISO days of the week (1 = Monday … 7 = Sunday). Empty means every day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DaysOfWeek(u8);

impl DaysOfWeek {
    pub const EVERY_DAY: DaysOfWeek = DaysOfWeek(0);

    /// Days from ISO numbers; a repeated day is the same day.
    pub fn parse(days: &[i64]) -> Result<Self, ScheduleError> {
        days.iter().try_fold(DaysOfWeek(0), |set, &day| {
            if (1..=7).contains(&day) {
                Ok(DaysOfWeek(set.0 | 1 << (day - 1)))
            } else {
                Err(ScheduleError::DayOutOfRange(day))
            }
        })
    }

    /// The ISO numbers of the days, ascending; empty for every day.
    pub fn to_numbers(self) -> Vec<i64> {
        (1..=7).filter(|day| self.0 & 1 << (day - 1) != 0).collect()
    }

    pub fn contains(self, date: NaiveDate) -> bool {
        self.0 == 0 || self.0 & 1 << date.weekday().num_days_from_monday() != 0
    }
}

/// When a rule is active in local time: in one of `hours` (empty = all day) on one of `days`.
/// For a window across midnight the day that counts is the day the window opened, so
/// "Friday 22:00–02:00" still holds at 01:00 on Saturday and not at 01:00 on Friday.
pub fn is_active(at: DateTime<Utc>, tz: Tz, hours: &[HoursWindow], days: DaysOfWeek) -> bool {
    let local = local_date_time(at, tz);
    if hours.is_empty() {
        return days.contains(local.date());
    }
    hours
        .iter()
        .filter_map(|window| window.opened_on(local))
        .any(|opened| days.contains(opened))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn tokyo() -> Tz {
        parse_time_zone("Asia/Tokyo").expect("known zone")
    }

    #[test]
    fn a_printed_local_time_is_an_instant_in_the_store_zone() {
        let printed = NaiveDate::from_ymd_opt(2026, 11, 22)
            .unwrap()
            .and_hms_opt(14, 5, 0)
            .unwrap();
        assert_eq!(
            instant_of_local(printed, tokyo()),
            Utc.with_ymd_and_hms(2026, 11, 22, 5, 5, 0).unwrap()
        );
        let new_york = parse_time_zone("America/New_York").unwrap();
        let skipped = NaiveDate::from_ymd_opt(2026, 3, 8)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(
            instant_of_local(skipped, new_york),
            Utc.with_ymd_and_hms(2026, 3, 8, 7, 30, 0).unwrap(),
            "02:30 EST, which the clocks call 03:30 EDT"
        );
        let twice = NaiveDate::from_ymd_opt(2026, 11, 1)
            .unwrap()
            .and_hms_opt(1, 30, 0)
            .unwrap();
        assert_eq!(
            instant_of_local(twice, new_york),
            Utc.with_ymd_and_hms(2026, 11, 1, 5, 30, 0).unwrap(),
            "the first 01:30 (EDT)"
        );
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 16, 0, 0).unwrap();
        assert_eq!(
            start_of_local_day(at, tokyo()),
            Utc.with_ymd_and_hms(2026, 11, 30, 15, 0, 0).unwrap(),
            "01:00 on Dec 1 in Tokyo: the day began at 15:00 UTC"
        );
    }

    /// A UTC instant from a local wall-clock time in `tz`.
    fn local(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("unambiguous")
            .with_timezone(&Utc)
    }

    fn window(start: &str, end: &str) -> HoursWindow {
        HoursWindow::parse(start, end).expect("valid window")
    }

    #[test]
    fn time_zones_are_checked_against_the_tz_database() {
        assert_eq!(parse_time_zone("Asia/Tokyo"), Ok(Tz::Asia__Tokyo));
        assert_eq!(parse_time_zone("UTC"), Ok(Tz::UTC));
        assert_eq!(
            parse_time_zone("America/New_York"),
            Ok(Tz::America__New_York)
        );
        for bad in ["", "Asia/Tokio", "Mars/Olympus", "asia/tokyo ", "+09:00"] {
            assert_eq!(
                parse_time_zone(bad),
                Err(ScheduleError::UnknownTimeZone),
                "{bad}"
            );
        }
    }

    #[test]
    fn times_of_day_are_strict_hh_mm() {
        assert_eq!(
            parse_time_of_day("00:00"),
            Ok(NaiveTime::from_hms_opt(0, 0, 0).unwrap())
        );
        assert_eq!(
            parse_time_of_day("23:59"),
            Ok(NaiveTime::from_hms_opt(23, 59, 0).unwrap())
        );
        for bad in [
            "24:00",
            "9:00",
            "09:0",
            "09-00",
            "10:60",
            "",
            "1000",
            "+1:00",
            "10:00:00",
            "１０:00",
        ] {
            assert_eq!(
                parse_time_of_day(bad),
                Err(ScheduleError::BadTimeOfDay),
                "{bad}"
            );
        }
        assert_eq!(format_time_of_day(window("07:05", "20:00").start), "07:05");
    }

    #[test]
    fn a_window_must_not_be_empty() {
        assert_eq!(
            HoursWindow::parse("10:00", "10:00"),
            Err(ScheduleError::EmptyWindow)
        );
        assert!(!window("10:00", "20:00").crosses_midnight());
        assert!(window("22:00", "02:00").crosses_midnight());
        assert!(window("20:00", "00:00").crosses_midnight());
    }

    #[test]
    fn days_of_week_are_iso_numbers() {
        assert_eq!(
            DaysOfWeek::parse(&[5, 1, 1]).map(DaysOfWeek::to_numbers),
            Ok(vec![1, 5])
        );
        assert_eq!(
            DaysOfWeek::parse(&[0]),
            Err(ScheduleError::DayOutOfRange(0))
        );
        assert_eq!(
            DaysOfWeek::parse(&[8]),
            Err(ScheduleError::DayOutOfRange(8))
        );
        assert_eq!(DaysOfWeek::parse(&[]), Ok(DaysOfWeek::EVERY_DAY));
        // 2026-11-30 is a Monday.
        let monday = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let mondays = DaysOfWeek::parse(&[1]).unwrap();
        assert!(mondays.contains(monday));
        assert!(!mondays.contains(monday.succ_opt().unwrap()));
        assert!(DaysOfWeek::EVERY_DAY.contains(monday));
    }

    #[test]
    fn a_daytime_window_is_start_inclusive_end_exclusive_in_local_time() {
        let tz = tokyo();
        let hours = [window("10:00", "20:00")];
        let every_day = DaysOfWeek::EVERY_DAY;
        assert!(!is_active(
            local(tz, 2026, 11, 30, 9, 59),
            tz,
            &hours,
            every_day
        ));
        assert!(is_active(
            local(tz, 2026, 11, 30, 10, 0),
            tz,
            &hours,
            every_day
        ));
        assert!(is_active(
            local(tz, 2026, 11, 30, 19, 59),
            tz,
            &hours,
            every_day
        ));
        assert!(!is_active(
            local(tz, 2026, 11, 30, 20, 0),
            tz,
            &hours,
            every_day
        ));
        // 01:30 UTC is 10:30 in Tokyo.
        let utc = Utc.with_ymd_and_hms(2026, 11, 30, 1, 30, 0).unwrap();
        assert!(is_active(utc, tz, &hours, every_day));
        assert!(!is_active(utc, Tz::UTC, &hours, every_day));
    }

    #[test]
    fn a_window_across_midnight_belongs_to_the_day_it_opened() {
        let tz = tokyo();
        let fridays = DaysOfWeek::parse(&[5]).unwrap();
        let hours = [window("22:00", "02:00")];
        // 2026-12-04 is a Friday.
        assert!(!is_active(
            local(tz, 2026, 12, 4, 21, 59),
            tz,
            &hours,
            fridays
        ));
        assert!(is_active(
            local(tz, 2026, 12, 4, 22, 0),
            tz,
            &hours,
            fridays
        ));
        assert!(
            is_active(local(tz, 2026, 12, 5, 1, 59), tz, &hours, fridays),
            "Sat 01:59"
        );
        assert!(!is_active(
            local(tz, 2026, 12, 5, 2, 0),
            tz,
            &hours,
            fridays
        ));
        assert!(
            !is_active(local(tz, 2026, 12, 4, 1, 0), tz, &hours, fridays),
            "Fri 01:00"
        );
        assert!(
            !is_active(local(tz, 2026, 12, 5, 22, 30), tz, &hours, fridays),
            "Sat 22:30"
        );
    }

    #[test]
    fn days_without_hours_mean_the_whole_local_day() {
        let tz = tokyo();
        let mondays = DaysOfWeek::parse(&[1]).unwrap();
        // Monday 00:30 in Tokyo is still Sunday 15:30 in UTC.
        let at = local(tz, 2026, 11, 30, 0, 30);
        assert!(is_active(at, tz, &[], mondays));
        assert!(!is_active(at, Tz::UTC, &[], mondays));
        assert!(is_active(at, tz, &[], DaysOfWeek::EVERY_DAY));
    }

    #[test]
    fn any_of_several_windows_will_do() {
        let tz = tokyo();
        let hours = [window("07:00", "09:00"), window("17:00", "19:00")];
        let days = DaysOfWeek::EVERY_DAY;
        assert!(is_active(local(tz, 2026, 11, 30, 8, 0), tz, &hours, days));
        assert!(!is_active(local(tz, 2026, 11, 30, 12, 0), tz, &hours, days));
        assert!(is_active(local(tz, 2026, 11, 30, 18, 0), tz, &hours, days));
    }

    #[test]
    fn windows_follow_daylight_saving_time() {
        let new_york = parse_time_zone("America/New_York").unwrap();
        let hours = [window("10:00", "11:00")];
        let days = DaysOfWeek::EVERY_DAY;
        // 10:30 local is 14:30 UTC in summer (EDT, -4) and 15:30 UTC in winter (EST, -5).
        let summer = Utc.with_ymd_and_hms(2026, 7, 1, 14, 30, 0).unwrap();
        let winter = Utc.with_ymd_and_hms(2026, 12, 1, 15, 30, 0).unwrap();
        assert!(is_active(summer, new_york, &hours, days));
        assert!(is_active(winter, new_york, &hours, days));
        assert!(!is_active(
            winter - chrono::Duration::hours(1),
            new_york,
            &hours,
            days
        ));
    }

    #[test]
    fn the_local_date_is_the_stores_calendar_day() {
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 15, 30, 0).unwrap();
        assert_eq!(
            local_date(at, tokyo()),
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
        );
        assert_eq!(
            local_date(at, Tz::UTC),
            NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()
        );
        let los_angeles = parse_time_zone("America/Los_Angeles").unwrap();
        assert_eq!(
            local_date(at, los_angeles),
            NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()
        );
    }
}
