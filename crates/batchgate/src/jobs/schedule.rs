//! Cron schedules in an IANA time zone: when a job is due, and how far apart its runs are.
//!
//! Parsing and evaluation are croner's (5 or 6 fields, `@hourly`…, `L`, `W`, `#`, names; day of
//! month and day of week are OR-ed as in Vixie cron and Kubernetes); time zones are jiff's, read
//! from the system time zone database.
//!
//! # Daylight saving time
//!
//! The schedule is evaluated on the wall clock of its zone. When the clock jumps, batchgate follows
//! what Vixie cron and croner (OCPS) do, so a job is expected exactly when cron starts it:
//!
//! * **Spring forward** (a wall-clock range does not exist that day): a *fixed-time* job, one whose
//!   second, minute and hour fields are single values such as `30 2 * * *`, is due at the first
//!   instant after the gap (03:00 in New York on 2025-03-09), the same day — it is never skipped.
//!   An *interval* job (`*/15 * * * *`, `0 */6 * * *`, `0 * * * *`) simply has no fires inside the
//!   gap: its fires are evenly spaced on the wall clock, and those that do not exist are dropped.
//! * **Fall back** (a wall-clock range happens twice): a fixed-time job is due once, on the first
//!   pass (01:30 EDT, not again at 01:30 EST), since running a daily job twice is the surprise
//!   cron users fear most; an interval job is due on both passes (01:00 EDT *and* 01:00 EST for
//!   `0 * * * *`), so an hourly job still runs every real hour.
//!
//! The same holds for zones with unusual shifts, e.g. Australia/Lord_Howe, whose clocks move by 30
//! minutes.
//!
//! Because gaps between fires change on such days (a daily fixed-time job in Berlin has a 23 h
//! and a 25 h gap each year), [`Schedule::cadence`] measures the longest gap over more than a year
//! of fires: the derived `max_staleness` must tolerate the longest legitimate wait.

use std::fmt;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};

/// How far ahead [`Schedule::cadence`] looks: more than a year, so every DST transition and every
/// month length is seen once.
const CADENCE_WINDOW: SignedDuration = SignedDuration::from_hours(400 * 24);
/// Most fires [`Schedule::cadence`] enumerates: enough for an hour of per-second fires.
const CADENCE_MAX_FIRES: usize = 4_000;
/// Spacing of the sample points that find every gap longer than it.
const SAMPLE_STEP: SignedDuration = SignedDuration::from_hours(1);

/// Why a schedule was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid schedule {expr:?}: {source}")]
    Cron {
        expr: String,
        #[source]
        source: croner::errors::CronError,
    },
    #[error("unknown time zone {name:?}: {reason}")]
    TimeZone { name: String, reason: String },
    #[error("schedule {expr:?} never fires")]
    NeverFires { expr: String },
}

/// A parsed cron expression bound to a time zone.
#[derive(Clone)]
pub struct Schedule {
    expr: String,
    cron: Cron,
    zone_name: String,
    zone: TimeZone,
}

/// The rhythm of a schedule, measured over a representative window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    /// Longest real-time gap between two consecutive fires (basis of the derived max staleness).
    pub longest_gap: SignedDuration,
    /// Typical (median) gap: the "schedule interval" of the runbook's escalation L2.
    pub interval: SignedDuration,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?} in {})", self.expr, self.zone_name)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.zone_name == other.zone_name
    }
}

impl Schedule {
    /// Parses `expr` (5 fields, or 6 with seconds first) in the IANA zone `zone_name`. A schedule
    /// that can never fire (`0 0 30 2 *`) is refused: a job expected never would never be late.
    pub fn new(expr: &str, zone_name: &str) -> Result<Self, ScheduleError> {
        let zone = TimeZone::get(zone_name).map_err(|e| ScheduleError::TimeZone {
            name: zone_name.to_owned(),
            reason: e.to_string(),
        })?;
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|source| ScheduleError::Cron {
                expr: expr.to_owned(),
                source,
            })?;
        let schedule = Schedule {
            expr: expr.to_owned(),
            cron,
            zone_name: zone_name.to_owned(),
            zone,
        };
        // Day-of-month patterns repeat within 4 years (29 February) and `W`/`#` within 28.
        let probe = Timestamp::UNIX_EPOCH;
        if schedule.next_after(probe).is_none() {
            return Err(ScheduleError::NeverFires { expr: expr.to_owned() });
        }
        Ok(schedule)
    }

    /// The cron expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The IANA name of the schedule's time zone.
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    /// The schedule's time zone.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// Whether croner treats this as a fixed-time job for DST (single-valued second, minute and
    /// hour fields); otherwise it is an interval job. See the module documentation.
    pub fn is_fixed_time(&self) -> bool {
        self.cron.determine_job_type() == croner::JobType::FixedTime
    }

    /// The first fire strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_next_occurrence(&self.zoned(t), false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The last fire at or before `t` (the fire a job should have acted on by `t`).
    pub fn last_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_previous_occurrence(&self.zoned(t), true)
            .ok()
            .map(|z| z.timestamp())
    }

    /// Fires strictly after `t`, in order (the fold pass of a fall-back day is carried by the
    /// returned zoned times, so both passes of an interval job are produced).
    pub fn fires_after(&self, t: Timestamp) -> impl Iterator<Item = Timestamp> + '_ {
        self.cron.iter_after(self.zoned(t)).map(|z| z.timestamp())
    }

    /// Measures the gaps between consecutive fires over the 400 days from `from` (`None` only for
    /// a schedule that never fires again).
    ///
    /// Enumerating every fire of a frequent schedule over a year would cost seconds, so gaps are
    /// found two ways: every gap longer than an hour contains an hourly sample point, and its
    /// ends are the fires on either side of that point; shorter gaps repeat every hour (the
    /// minute and second fields are the same in every hour), so the first fires show them. The
    /// typical gap is the median of those first fires' gaps.
    pub fn cadence(&self, from: Timestamp) -> Option<Cadence> {
        let end = from.checked_add(CADENCE_WINDOW).ok()?;
        let first = self.next_after(from)?;
        let fires: Vec<Timestamp> = std::iter::once(first)
            .chain(self.fires_after(first).take_while(|f| *f <= end))
            .take(CADENCE_MAX_FIRES)
            .collect();
        let mut gaps: Vec<SignedDuration> = fires.windows(2).map(|w| w[1].duration_since(w[0])).collect();
        let mut longest = gaps.iter().copied().max().unwrap_or(SignedDuration::ZERO);
        let mut sample = if self.fires_every_hour() {
            end + SAMPLE_STEP
        } else {
            from
        };
        while sample <= end {
            let Some(before) = self.last_at_or_before(sample) else {
                sample = first;
                continue;
            };
            let Some(after) = self.next_after(before) else { break };
            longest = longest.max(after.duration_since(before));
            sample = after.max(sample.checked_add(SAMPLE_STEP).ok()?);
        }
        if longest.is_zero() {
            return None;
        }
        if gaps.is_empty() {
            gaps.push(longest);
        }
        gaps.sort_unstable();
        Some(Cadence {
            longest_gap: longest,
            interval: gaps[gaps.len() / 2],
        })
    }

    /// Whether every hour of every day has fires (so no gap exceeds an hour and sampling for
    /// longer ones is wasted work).
    fn fires_every_hour(&self) -> bool {
        let p = &self.cron.pattern;
        p.hours.values().len() == 24
            && p.months.values().len() == 12
            && p.is_dom_wildcard()
            && p.is_dow_wildcard()
            && !p.days.has_modifiers()
            && !p.days_of_week.has_modifiers()
    }

    fn zoned(&self, t: Timestamp) -> Zoned {
        // croner works in whole seconds; flooring keeps a fire at 10:00:00 "at or before" 10:00:00.5.
        let secs = Timestamp::from_second(t.as_second()).unwrap_or(t);
        secs.to_zoned(self.zone.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// Fires strictly after `from` and before `until`, as RFC 3339 instants with the zone's offset.
    fn fires(expr: &str, zone: &str, from: &str, until: &str) -> Vec<String> {
        let s = Schedule::new(expr, zone).unwrap();
        let tz = TimeZone::get(zone).unwrap();
        s.fires_after(ts(from))
            .take_while(|f| *f < ts(until))
            .map(|f| f.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M%:z").to_string())
            .collect()
    }

    #[test]
    fn parses_the_documented_forms() {
        for expr in [
            "0 */6 * * *",
            "0 2 * * *",
            "*/5 * * * * *",
            "@hourly",
            "@daily",
            "@weekly",
            "@monthly",
            "@yearly",
            "0 0 L * *",
            "0 0 15W * *",
            "0 0 * * 5#L",
            "0 0 * * MON#2",
            "0 9 * JAN-MAR MON-FRI",
        ] {
            Schedule::new(expr, "UTC").unwrap_or_else(|e| panic!("{expr}: {e}"));
        }
    }

    #[test]
    fn refuses_bad_expressions_and_zones() {
        for expr in ["0 */6 * *", "61 * * * *", "* * * * * * *", "", "@reboot", "0 0 31 2 *"] {
            assert!(Schedule::new(expr, "UTC").is_err(), "{expr:?} accepted");
        }
        let err = Schedule::new("0 0 30 2 *", "UTC").unwrap_err();
        assert!(matches!(err, ScheduleError::NeverFires { .. }), "{err}");
        let err = Schedule::new("0 * * * *", "Mars/Olympus_Mons").unwrap_err();
        assert!(
            err.to_string().starts_with("unknown time zone \"Mars/Olympus_Mons\""),
            "{err}"
        );
        let err = Schedule::new("0 */6 * *", "UTC").unwrap_err();
        assert!(err.to_string().starts_with("invalid schedule \"0 */6 * *\": "), "{err}");
    }

    #[test]
    fn next_and_last_fire() {
        let s = Schedule::new("0 */6 * * *", "UTC").unwrap();
        assert_eq!(
            s.next_after(ts("2025-01-01T05:59:59Z")),
            Some(ts("2025-01-01T06:00:00Z"))
        );
        assert_eq!(
            s.next_after(ts("2025-01-01T06:00:00Z")),
            Some(ts("2025-01-01T12:00:00Z"))
        );
        assert_eq!(
            s.last_at_or_before(ts("2025-01-01T06:00:00Z")),
            Some(ts("2025-01-01T06:00:00Z"))
        );
        assert_eq!(
            s.last_at_or_before(ts("2025-01-01T06:00:00.5Z")),
            Some(ts("2025-01-01T06:00:00Z"))
        );
        assert_eq!(
            s.last_at_or_before(ts("2025-01-01T05:59:59Z")),
            Some(ts("2025-01-01T00:00:00Z"))
        );
        let berlin = Schedule::new("0 2 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            berlin.next_after(ts("2025-07-01T12:00:00Z")),
            Some(ts("2025-07-02T00:00:00Z"))
        );
    }

    #[test]
    fn special_day_fields() {
        let last = Schedule::new("0 0 L * *", "UTC").unwrap();
        assert_eq!(
            last.next_after(ts("2024-02-01T00:00:00Z")),
            Some(ts("2024-02-29T00:00:00Z"))
        );
        // 15 March 2025 is a Saturday: the nearest weekday is Friday the 14th.
        let weekday = Schedule::new("0 0 15W * *", "UTC").unwrap();
        assert_eq!(
            weekday.next_after(ts("2025-03-01T00:00:00Z")),
            Some(ts("2025-03-14T00:00:00Z"))
        );
        let last_friday = Schedule::new("0 0 * * 5#L", "UTC").unwrap();
        assert_eq!(
            last_friday.next_after(ts("2025-01-01T00:00:00Z")),
            Some(ts("2025-01-31T00:00:00Z"))
        );
        let second_monday = Schedule::new("0 0 * * MON#2", "UTC").unwrap();
        assert_eq!(
            second_monday.next_after(ts("2025-01-01T00:00:00Z")),
            Some(ts("2025-01-13T00:00:00Z"))
        );
        let seconds = Schedule::new("30 * * * * *", "UTC").unwrap();
        assert_eq!(
            seconds.next_after(ts("2025-01-01T00:00:00Z")),
            Some(ts("2025-01-01T00:00:30Z"))
        );
    }

    #[test]
    fn job_types() {
        assert!(Schedule::new("30 2 * * *", "UTC").unwrap().is_fixed_time());
        assert!(Schedule::new("0 2 * * *", "UTC").unwrap().is_fixed_time());
        assert!(!Schedule::new("0 */6 * * *", "UTC").unwrap().is_fixed_time());
        assert!(!Schedule::new("0 * * * *", "UTC").unwrap().is_fixed_time());
    }

    /// Spring forward, fixed time: due at the first instant after the gap, the same day.
    #[test]
    fn spring_forward_fixed_time_runs_after_the_gap() {
        // New York: 02:00 EST → 03:00 EDT on 2025-03-09.
        let got = fires(
            "30 2 * * *",
            "America/New_York",
            "2025-03-08T00:00:00Z",
            "2025-03-11T00:00:00Z",
        );
        assert_eq!(
            got,
            [
                "2025-03-08T02:30-05:00",
                "2025-03-09T03:00-04:00",
                "2025-03-10T02:30-04:00"
            ]
        );
        // Berlin: 02:00 CET → 03:00 CEST on 2025-03-30.
        let got = fires(
            "30 2 * * *",
            "Europe/Berlin",
            "2025-03-29T00:00:00Z",
            "2025-04-01T00:00:00Z",
        );
        assert_eq!(
            got,
            [
                "2025-03-29T02:30+01:00",
                "2025-03-30T03:00+02:00",
                "2025-03-31T02:30+02:00"
            ]
        );
    }

    /// Spring forward, interval: the wall-clock fires inside the gap do not exist.
    #[test]
    fn spring_forward_interval_skips_the_gap() {
        let got = fires(
            "30 * * * *",
            "America/New_York",
            "2025-03-09T05:00:00Z",
            "2025-03-09T08:00:00Z",
        );
        assert_eq!(
            got,
            [
                "2025-03-09T00:30-05:00",
                "2025-03-09T01:30-05:00",
                "2025-03-09T03:30-04:00"
            ]
        );
        let got = fires(
            "30 * * * *",
            "Europe/Berlin",
            "2025-03-29T23:00:00Z",
            "2025-03-30T02:00:00Z",
        );
        assert_eq!(
            got,
            [
                "2025-03-30T00:30+01:00",
                "2025-03-30T01:30+01:00",
                "2025-03-30T03:30+02:00"
            ]
        );
    }

    /// Fall back, fixed time: due once, on the first pass.
    #[test]
    fn fall_back_fixed_time_runs_once() {
        let got = fires(
            "30 1 * * *",
            "America/New_York",
            "2025-11-01T12:00:00Z",
            "2025-11-03T12:00:00Z",
        );
        assert_eq!(got, ["2025-11-02T01:30-04:00", "2025-11-03T01:30-05:00"]);
        let got = fires(
            "30 2 * * *",
            "Europe/Berlin",
            "2025-10-25T12:00:00Z",
            "2025-10-27T12:00:00Z",
        );
        assert_eq!(got, ["2025-10-26T02:30+02:00", "2025-10-27T02:30+01:00"]);
    }

    /// Fall back, interval: due on both passes.
    #[test]
    fn fall_back_interval_runs_on_both_passes() {
        let got = fires(
            "0 * * * *",
            "America/New_York",
            "2025-11-02T04:30:00Z",
            "2025-11-02T07:30:00Z",
        );
        assert_eq!(
            got,
            [
                "2025-11-02T01:00-04:00",
                "2025-11-02T01:00-05:00",
                "2025-11-02T02:00-05:00"
            ]
        );
        let got = fires(
            "30 * * * *",
            "Europe/Berlin",
            "2025-10-25T23:45:00Z",
            "2025-10-26T02:00:00Z",
        );
        assert_eq!(got, ["2025-10-26T02:30+02:00", "2025-10-26T02:30+01:00"]);
    }

    /// Lord Howe Island moves its clocks by 30 minutes: 02:00 → 02:30 on 2025-10-05 and
    /// 02:00 → 01:30 on 2025-04-06.
    #[test]
    fn lord_howe_half_hour_shift() {
        let zone = "Australia/Lord_Howe";
        let got = fires("15 2 * * *", zone, "2025-10-03T12:00:00Z", "2025-10-05T12:00:00Z");
        assert_eq!(got, ["2025-10-04T02:15+10:30", "2025-10-05T02:30+11:00"]);
        let got = fires("45 1 * * *", zone, "2025-04-04T12:00:00Z", "2025-04-06T12:00:00Z");
        assert_eq!(got, ["2025-04-05T01:45+11:00", "2025-04-06T01:45+11:00"]);
        let got = fires("*/30 1 * * *", zone, "2025-04-05T13:00:00Z", "2025-04-05T16:00:00Z");
        assert_eq!(
            got,
            [
                "2025-04-06T01:00+11:00",
                "2025-04-06T01:30+11:00",
                "2025-04-06T01:30+10:30"
            ],
            "an interval job is due on both passes of 01:30"
        );
    }

    #[test]
    fn next_and_last_are_consistent_on_dst_days() {
        for (expr, zone) in [
            ("30 2 * * *", "America/New_York"),
            ("0 * * * *", "America/New_York"),
            ("30 1 * * *", "America/New_York"),
            ("*/20 * * * *", "Europe/Berlin"),
            ("30 2 * * *", "Europe/Berlin"),
            ("*/15 * * * *", "Australia/Lord_Howe"),
        ] {
            let s = Schedule::new(expr, zone).unwrap();
            for window in [
                ts("2025-03-08T00:00:00Z"),
                ts("2025-10-25T00:00:00Z"),
                ts("2025-04-05T00:00:00Z"),
            ] {
                let fires: Vec<_> = s.fires_after(window).take(200).collect();
                for pair in fires.windows(2) {
                    assert!(pair[0] < pair[1], "{expr} {zone}: not increasing {pair:?}");
                    assert_eq!(
                        s.next_after(pair[0]),
                        Some(pair[1]),
                        "{expr} {zone} next after {}",
                        pair[0]
                    );
                    let just_before = pair[1] - SignedDuration::from_secs(1);
                    assert_eq!(
                        s.last_at_or_before(just_before),
                        Some(pair[0]),
                        "{expr} {zone} last before {}",
                        pair[1]
                    );
                }
            }
        }
    }

    #[test]
    fn cadence_of_the_runbook_jobs() {
        let from = ts("2025-01-01T00:00:00Z");
        let ef = Schedule::new("0 */6 * * *", "UTC").unwrap().cadence(from).unwrap();
        assert_eq!(
            ef,
            Cadence {
                longest_gap: SignedDuration::from_hours(6),
                interval: SignedDuration::from_hours(6)
            }
        );
        let sync = Schedule::new("0 2 * * *", "UTC").unwrap().cadence(from).unwrap();
        assert_eq!(sync.longest_gap, SignedDuration::from_hours(24));
        // In Berlin the daily job waits 25 h across the October change.
        let berlin = Schedule::new("0 2 * * *", "Europe/Berlin")
            .unwrap()
            .cadence(from)
            .unwrap();
        assert_eq!(
            berlin,
            Cadence {
                longest_gap: SignedDuration::from_hours(25),
                interval: SignedDuration::from_hours(24)
            }
        );
        // Weekdays only: typical gap one day, longest over the weekend.
        let weekdays = Schedule::new("0 9 * * MON-FRI", "UTC").unwrap().cadence(from).unwrap();
        assert_eq!(weekdays.interval, SignedDuration::from_hours(24));
        assert_eq!(weekdays.longest_gap, SignedDuration::from_hours(72));
        // Leap days: the gap around the window is still measured.
        let leap = Schedule::new("0 0 29 2 *", "UTC").unwrap().cadence(from).unwrap();
        assert_eq!(leap.longest_gap, SignedDuration::from_hours(24 * (365 * 4 + 1)));
        // Frequent schedules: structural gaps far beyond the enumerated fires are still found.
        let secondly = Schedule::new("* * * * * *", "UTC").unwrap().cadence(from).unwrap();
        assert_eq!(
            secondly,
            Cadence {
                longest_gap: SignedDuration::from_secs(1),
                interval: SignedDuration::from_secs(1)
            }
        );
        let office = Schedule::new("* 9-17 * * MON-FRI", "Europe/Berlin")
            .unwrap()
            .cadence(from)
            .unwrap();
        let weekend = SignedDuration::from_hours(63) + SignedDuration::from_mins(1);
        assert_eq!(
            office,
            Cadence {
                longest_gap: weekend + SignedDuration::from_hours(1),
                interval: SignedDuration::from_mins(1)
            },
            "DST weekend"
        );
        let no_december = Schedule::new("*/5 * * 1-11 *", "UTC").unwrap().cadence(from).unwrap();
        assert_eq!(
            no_december.longest_gap,
            SignedDuration::from_hours(31 * 24) + SignedDuration::from_mins(5)
        );
        let half_hour = Schedule::new("*/30 * * * *", "Australia/Lord_Howe")
            .unwrap()
            .cadence(from)
            .unwrap();
        assert_eq!(half_hour.longest_gap, SignedDuration::from_mins(30));
    }
}
