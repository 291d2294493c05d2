//! The archive's layout read backwards, for `verify` and `query`: which key
//! prefixes hold a tenant's days, whether a key has the shape of the key
//! template (or of its alternate form), and where an object's own metadata
//! says it belongs. Pure functions over the transform crate's template and
//! calendar, so the writer and the readers can never disagree on a key.

use std::fmt;

use audit_archiver_transform::template::{Field, Part, Specifier, Template, Values};
use audit_archiver_transform::time::{civil_from_days, days_from_civil, local_time, CivilTime};
use audit_archiver_transform::{alternate_key, SettingsError};

/// Milliseconds per day.
const MS_PER_DAY: i64 = 86_400_000;

/// A calendar day in the layout's UTC offset, as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i64);

impl Day {
    /// The local day of `epoch_ms` at `offset_minutes` east of UTC.
    pub fn of_ms(epoch_ms: i64, offset_minutes: i16) -> Day {
        Day((epoch_ms + i64::from(offset_minutes) * 60_000).div_euclid(MS_PER_DAY))
    }

    /// The day of a calendar date.
    pub fn from_ymd(year: i64, month: u32, day: u32) -> Day {
        Day(days_from_civil(year, month, day))
    }

    /// Its first millisecond (epoch ms, UTC) at `offset_minutes`.
    pub fn start_ms(self, offset_minutes: i16) -> i64 {
        self.0 * MS_PER_DAY - i64::from(offset_minutes) * 60_000
    }

    /// Its last millisecond (epoch ms, UTC) at `offset_minutes`.
    pub fn end_ms(self, offset_minutes: i16) -> i64 {
        self.start_ms(offset_minutes) + MS_PER_DAY - 1
    }

    /// The next day.
    pub fn next(self) -> Day {
        Day(self.0 + 1)
    }

    /// Midnight of the day, as the template's calendar fields see it.
    fn civil(self) -> CivilTime {
        let (year, month, day) = civil_from_days(self.0);
        CivilTime {
            year: u16::try_from(year).unwrap_or(0),
            month: month as u8,
            day: day as u8,
            hour: 0,
            minute: 0,
            second: 0,
            day_of_year: (self.0 - days_from_civil(year, 1, 1) + 1) as u16,
        }
    }
}

impl fmt::Display for Day {
    /// `YYYY-MM-DD`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = civil_from_days(self.0);
        write!(f, "{year:04}-{month:02}-{day:02}")
    }
}

/// The key layout: the parsed key template, its UTC offset and the
/// quarantine prefix.
#[derive(Debug, Clone)]
pub struct Layout {
    template: Template,
    utc_offset_minutes: i16,
    quarantine_prefix: String,
}

/// Why an archived object is not where its metadata says it belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misplaced {
    /// The key the metadata gives (the alternate form is accepted too).
    pub expected: String,
}

impl Layout {
    /// Parses the key template (a preset name or a template).
    pub fn new(
        key_template: &str,
        utc_offset_minutes: i16,
        quarantine_prefix: String,
    ) -> Result<Layout, SettingsError> {
        Ok(Layout {
            template: Template::parse(key_template)?,
            utc_offset_minutes,
            quarantine_prefix,
        })
    }

    /// The UTC offset of dates in keys, in minutes.
    pub fn utc_offset_minutes(&self) -> i16 {
        self.utc_offset_minutes
    }

    /// The quarantine prefix, e.g. `_quarantine/`.
    pub fn quarantine_prefix(&self) -> &str {
        &self.quarantine_prefix
    }

    /// The listing prefix that holds `tenant`'s objects of `day`: the
    /// template rendered up to its first part that is not the tenant or a
    /// date (`%Y %m %d %j`), cut after its last `/`. For the presets that is
    /// `{tenant}/YYYY/MM/DD/`.
    pub fn day_prefix(&self, tenant: &str, day: Day) -> String {
        let civil = day.civil();
        let mut out = String::new();
        for part in self.template.parts() {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field(Field::Tenant) => out.push_str(tenant),
                Part::Time(spec @ (Specifier::Year | Specifier::Month | Specifier::Day)) => {
                    push_number(&mut out, date_value(*spec, &civil), spec.width())
                }
                Part::Time(Specifier::DayOfYear) => {
                    push_number(&mut out, civil.day_of_year.into(), 3)
                }
                _ => break,
            }
        }
        let cut = out.rfind('/').map_or(0, |at| at + 1);
        out.truncate(cut);
        out
    }

    /// The listing prefixes covering `tenant`'s days `first..=last`, in day
    /// order, each with the days it holds (several when the layout's folders
    /// are coarser than a day, e.g. monthly).
    pub fn prefixes(&self, tenant: &str, first: Day, last: Day) -> Vec<(String, Vec<Day>)> {
        let mut out: Vec<(String, Vec<Day>)> = Vec::new();
        let mut day = first;
        while day <= last {
            let prefix = self.day_prefix(tenant, day);
            match out.iter_mut().find(|(p, _)| *p == prefix) {
                Some((_, days)) => days.push(day),
                None => out.push((prefix, vec![day])),
            }
            day = day.next();
        }
        out
    }

    /// The key an object with this metadata was written under.
    pub fn expected_key(
        &self,
        tenant: &str,
        queue: &str,
        message_id: &str,
        archive_ms: u64,
    ) -> Option<String> {
        let time = local_time(archive_ms, self.utc_offset_minutes)?;
        Some(self.template.render(&Values {
            tenant,
            queue,
            message_id,
            time: &time,
        }))
    }

    /// Checks that `key` is the key its metadata gives, or that key's
    /// alternate form (written when another message held the name).
    pub fn check_placement(
        &self,
        key: &str,
        tenant: &str,
        queue: &str,
        message_id: &str,
        archive_ms: u64,
    ) -> Result<(), Misplaced> {
        let Some(expected) = self.expected_key(tenant, queue, message_id, archive_ms) else {
            return Err(Misplaced {
                expected: format!("(archive time {archive_ms} ms is out of range)"),
            });
        };
        if key == expected || key == alternate_key(&expected, message_id) {
            Ok(())
        } else {
            Err(Misplaced { expected })
        }
    }

    /// Whether `key` has the template's shape for `tenant` (or the alternate
    /// form's); `Some` carries the day its date fields name, when they name one.
    pub fn shape(&self, key: &str, tenant: &str) -> Option<KeyShape> {
        if let Some(shape) = self.match_template(key, tenant) {
            return Some(shape);
        }
        // The alternate form: `-{message_id}` before the last segment's
        // final extension. Try each `-` as the start of that insertion.
        let segment_start = key.rfind('/').map_or(0, |at| at + 1);
        let segment = &key[segment_start..];
        let stem = segment.len() - segment.trim_start_matches('.').len();
        let extension_at = match segment[stem..].rfind('.') {
            Some(dot) if dot > 0 => segment_start + stem + dot,
            _ => key.len(),
        };
        let extension = &key[extension_at..];
        key[segment_start..extension_at]
            .match_indices('-')
            .map(|(at, _)| segment_start + at)
            .filter(|&at| at + 1 < extension_at)
            .find_map(|at| self.match_template(&format!("{}{extension}", &key[..at]), tenant))
    }

    fn match_template(&self, key: &str, tenant: &str) -> Option<KeyShape> {
        let mut captured = Captured::default();
        match_parts(self.template.parts(), key, tenant, &mut captured).then(|| KeyShape {
            day: captured.day(),
        })
    }
}

/// What a key that has the layout's shape says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyShape {
    /// The day its date fields name, if they name a whole date.
    pub day: Option<Day>,
}

fn date_value(spec: Specifier, civil: &CivilTime) -> u32 {
    match spec {
        Specifier::Year => civil.year.into(),
        Specifier::Month => civil.month.into(),
        _ => civil.day.into(),
    }
}

fn push_number(out: &mut String, value: u32, width: usize) {
    out.push_str(&format!("{value:0width$}"));
}

/// Date fields captured while matching a key against the template.
#[derive(Debug, Clone, Copy, Default)]
struct Captured {
    year: Option<u32>,
    month: Option<u32>,
    day: Option<u32>,
    day_of_year: Option<u32>,
}

impl Captured {
    /// Records a field (the first occurrence names the day: the folder, with
    /// the presets; a later one that disagrees is for the metadata check to
    /// report as misplaced, not a different shape). Times must be in range.
    fn set(&mut self, spec: Specifier, value: u32) -> bool {
        let slot = match spec {
            Specifier::Year => &mut self.year,
            Specifier::Month => &mut self.month,
            Specifier::Day => &mut self.day,
            Specifier::DayOfYear => &mut self.day_of_year,
            Specifier::Hour | Specifier::Minute | Specifier::Second => {
                let limit = if spec == Specifier::Hour { 24 } else { 60 };
                return value < limit;
            }
        };
        if slot.is_none() {
            *slot = Some(value);
        }
        true
    }

    fn day(&self) -> Option<Day> {
        let year = i64::from(self.year?);
        match (self.month, self.day, self.day_of_year) {
            (Some(month), Some(day), _) if (1..=12).contains(&month) && (1..=31).contains(&day) => {
                let found = Day::from_ymd(year, month, day);
                // Reject dates such as 02-31 that the arithmetic would roll over.
                (civil_from_days(found.0) == (year, month, day)).then_some(found)
            }
            (_, _, Some(doy)) if (1..=366).contains(&doy) => {
                Some(Day(days_from_civil(year, 1, 1) + i64::from(doy) - 1))
            }
            _ => None,
        }
    }
}

/// Matches `key` against template parts, backtracking over the free-length
/// fields (`{queue}`, `{message_id}`: one or more bytes without `/`).
fn match_parts(parts: &[Part], key: &str, tenant: &str, captured: &mut Captured) -> bool {
    let Some((part, rest)) = parts.split_first() else {
        return key.is_empty();
    };
    match part {
        Part::Literal(text) => key
            .strip_prefix(text.as_str())
            .is_some_and(|tail| match_parts(rest, tail, tenant, captured)),
        Part::Field(Field::Tenant) => key
            .strip_prefix(tenant)
            .is_some_and(|tail| match_parts(rest, tail, tenant, captured)),
        Part::Field(_) => {
            let limit = key.find('/').unwrap_or(key.len());
            (1..=limit)
                .filter(|&end| key.is_char_boundary(end))
                .any(|end| {
                    let mut attempt = *captured;
                    let matched = match_parts(rest, &key[end..], tenant, &mut attempt);
                    if matched {
                        *captured = attempt;
                    }
                    matched
                })
        }
        Part::Time(spec) => {
            let width = spec.width();
            let Some(digits) = key.get(..width) else {
                return false;
            };
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            let value: u32 = digits.parse().unwrap_or(u32::MAX);
            captured.set(*spec, value) && match_parts(rest, &key[width..], tenant, captured)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JST: i16 = 540;

    fn layout(template: &str) -> Layout {
        Layout::new(template, JST, "_quarantine/".into()).unwrap()
    }

    #[test]
    fn days_follow_the_offset() {
        // 2025-06-27T02:32:20.913Z is 11:32 JST on the 27th.
        let day = Day::of_ms(1_750_991_540_913, JST);
        assert_eq!(day.to_string(), "2025-06-27");
        assert_eq!(Day::of_ms(day.start_ms(JST), JST), day);
        assert_eq!(
            Day::of_ms(day.start_ms(JST) - 1, JST).to_string(),
            "2025-06-26"
        );
        assert_eq!(Day::of_ms(day.end_ms(JST), JST), day);
        assert_eq!(Day::of_ms(day.end_ms(JST) + 1, JST), day.next());
        assert_eq!(day.start_ms(JST), 1_750_950_000_000);
        assert_eq!(Day::from_ymd(2024, 2, 29).next().to_string(), "2024-03-01");
    }

    #[test]
    fn day_prefixes_of_the_presets_and_coarser_layouts() {
        let day = Day::from_ymd(2025, 6, 27);
        assert_eq!(
            layout("default").day_prefix("acme", day),
            "acme/2025/06/27/"
        );
        assert_eq!(layout("seed").day_prefix("acme", day), "acme/2025/06/27/");
        assert_eq!(
            layout("{tenant}/%Y/%j/{message_id}.json").day_prefix("acme", day),
            "acme/2025/178/"
        );
        assert_eq!(
            layout("{tenant}/%Y/%m/x-%d-{message_id}.json").day_prefix("acme", day),
            "acme/2025/06/"
        );
        assert_eq!(
            layout("{tenant}/{queue}/%Y/x.json").day_prefix("acme", day),
            "acme/"
        );
        let monthly = layout("{tenant}/%Y-%m/%d-%H%M%S-{message_id}.json");
        let prefixes = monthly.prefixes(
            "acme",
            Day::from_ymd(2025, 6, 29),
            Day::from_ymd(2025, 7, 2),
        );
        assert_eq!(
            prefixes,
            vec![
                (
                    "acme/2025-06/".to_string(),
                    vec![Day::from_ymd(2025, 6, 29), Day::from_ymd(2025, 6, 30)]
                ),
                (
                    "acme/2025-07/".to_string(),
                    vec![Day::from_ymd(2025, 7, 1), Day::from_ymd(2025, 7, 2)]
                ),
            ]
        );
    }

    #[test]
    fn placement_accepts_the_key_and_its_alternate_only() {
        let layout = layout("seed");
        let key = "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220.json";
        let ms = 1_750_991_540_913;
        assert_eq!(layout.check_placement(key, "acme", "q", "m-1", ms), Ok(()));
        let alternate = "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220-m-1.json";
        assert_eq!(
            layout.check_placement(alternate, "acme", "q", "m-1", ms),
            Ok(())
        );
        let moved = "acme/2025/06/28/prismacloud-auditlog-acme-20250627-113220.json";
        assert_eq!(
            layout.check_placement(moved, "acme", "q", "m-1", ms),
            Err(Misplaced {
                expected: key.to_string()
            })
        );
        assert!(layout.check_placement(key, "beta", "q", "m-1", ms).is_err());
        assert!(layout
            .check_placement(key, "acme", "q", "m-1", ms + 1000)
            .is_err());
    }

    #[test]
    fn shapes_of_keys() {
        let layout = layout("default");
        let key = "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220-0a1b-2c.json";
        assert_eq!(
            layout.shape(key, "acme"),
            Some(KeyShape {
                day: Some(Day::from_ymd(2025, 6, 27))
            })
        );
        for stray in [
            "acme/2025/06/27/notes.txt",
            "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220.json",
            "acme/2025/06/27/prismacloud-auditlog-beta-20250627-113220-m.json",
            "acme/2025/6/27/prismacloud-auditlog-acme-20250627-113220-m.json",
            "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113260-m.json",
            "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220-a/b.json",
            "acme/README",
        ] {
            assert_eq!(layout.shape(stray, "acme"), None, "{stray}");
        }
        // A file name whose date disagrees with its folder still has the
        // shape (the metadata check finds it misplaced); the folder names the day.
        let moved = "acme/2025/06/29/prismacloud-auditlog-acme-20250627-113220-m.json";
        assert_eq!(
            layout.shape(moved, "acme"),
            Some(KeyShape {
                day: Some(Day::from_ymd(2025, 6, 29))
            })
        );
        // The date fields must name a real date for the day to be known.
        let odd = "acme/2025/02/31/prismacloud-auditlog-acme-20250231-113220-m.json";
        assert_eq!(layout.shape(odd, "acme"), Some(KeyShape { day: None }));

        let seed = super::Layout::new("seed", JST, "_q/".into()).unwrap();
        let base = "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220.json";
        assert!(seed.shape(base, "acme").is_some());
        let alternate = alternate_key(base, "5f3a-77");
        assert!(seed.shape(&alternate, "acme").is_some(), "{alternate}");
        assert!(seed
            .shape(
                "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220-.json",
                "acme"
            )
            .is_none());
    }

    /// The Athena table (docs/querying.md and the CloudFormation Glue table)
    /// projects `${tenant}/${dt}/` with `dt` formatted `yyyy/MM/dd`: that
    /// must be the day prefix of every preset.
    #[test]
    fn athena_projection_matches_the_presets() {
        let docs = include_str!("../../../docs/querying.md");
        let template = include_str!("../../../deploy/cloudformation.yaml");
        let value_after = |text: &str, name: &str| -> String {
            let at = text
                .find(name)
                .unwrap_or_else(|| panic!("{name} not found"));
            let rest = &text[at + name.len()..];
            let start = rest.find('\'').expect("a quoted value") + 1;
            let end = start + rest[start..].find('\'').expect("closing quote");
            rest[start..end].to_string()
        };
        let doc_location = value_after(docs, "'storage.location.template'");
        assert_eq!(doc_location, "s3://BUCKET/${tenant}/${dt}/");
        assert_eq!(value_after(docs, "'projection.dt.format'"), "yyyy/MM/dd");
        let cfn_location = value_after(template, "storage.location.template:");
        assert_eq!(cfn_location, "s3://${ArchiveBucket}/${!tenant}/${!dt}/");
        assert!(template.contains("projection.dt.format: yyyy/MM/dd"));

        for day in [Day::from_ymd(2025, 6, 27), Day::from_ymd(2024, 12, 31)] {
            // `yyyy/MM/dd` in Java's date pattern letters.
            let dt = day.to_string().replace('-', "/");
            for location in [
                &doc_location,
                &cfn_location
                    .replace("${!", "${")
                    .replace("${ArchiveBucket}", "BUCKET"),
            ] {
                let projected = location
                    .replace("s3://BUCKET/", "")
                    .replace("${tenant}", "acme")
                    .replace("${dt}", &dt);
                for preset in ["default", "seed"] {
                    assert_eq!(
                        layout(preset).day_prefix("acme", day),
                        projected,
                        "{preset}"
                    );
                }
            }
        }
    }
}
