//! Key templates: parsing a template (or preset name) once into parts, the
//! static safety checks that make every rendered key safe by construction,
//! and rendering a key from a message's values.
//!
//! Syntax: literal text, fields `{tenant}`, `{queue}` (the bare queue name),
//! `{message_id}`, and specifiers `%Y` (4-digit year), `%m`, `%d`, `%H`, `%M`,
//! `%S` (2 digits each), `%j` (3-digit day of the year) and `%%` (a literal
//! `%`). There is no other escape: a `{` always opens a field and a lone `}`
//! is an error.
//!
//! A template must start with literally `{tenant}/`; its literal text must
//! not hold a control character or `\`; no segment (text between `/`) may be
//! made only of literal text that is empty, `.` or `..` (every field and
//! specifier renders at least one byte and never `.`, `..` or a `/`); and its
//! shortest possible rendering must fit in [`MAX_KEY_LEN`] bytes. The router
//! still checks every rendered key with [`crate::check_key`].

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::key::MAX_KEY_LEN;
use crate::router::SettingsError;
use crate::time::CivilTime;

/// The preset `seed`: the reference layout (same-second messages collide).
pub const SEED: &str = "{tenant}/%Y/%m/%d/prismacloud-auditlog-{tenant}-%Y%m%d-%H%M%S.json";

/// The preset `default`: the seed's layout plus the message id (no collisions).
pub const DEFAULT: &str =
    "{tenant}/%Y/%m/%d/prismacloud-auditlog-{tenant}-%Y%m%d-%H%M%S-{message_id}.json";

/// The template a preset name stands for, or `template` itself.
pub fn expand_preset(template: &str) -> &str {
    match template {
        "seed" => SEED,
        "default" => DEFAULT,
        other => other,
    }
}

/// A named field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `{tenant}`.
    Tenant = 0,
    /// `{queue}`: the bare queue name.
    Queue = 1,
    /// `{message_id}`.
    MessageId = 2,
}

/// A time specifier (`%%` is parsed as literal text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Specifier {
    /// `%Y`: 4-digit year.
    Year,
    /// `%m`: 2-digit month.
    Month,
    /// `%d`: 2-digit day of the month.
    Day,
    /// `%H`: 2-digit hour (00-23).
    Hour,
    /// `%M`: 2-digit minute.
    Minute,
    /// `%S`: 2-digit second.
    Second,
    /// `%j`: 3-digit day of the year (001-366).
    DayOfYear,
}

impl Specifier {
    /// How many digits it renders.
    pub fn width(self) -> usize {
        match self {
            Specifier::Year => 4,
            Specifier::DayOfYear => 3,
            _ => 2,
        }
    }

    fn value(self, t: &CivilTime) -> u32 {
        match self {
            Specifier::Year => t.year.into(),
            Specifier::Month => t.month.into(),
            Specifier::Day => t.day.into(),
            Specifier::Hour => t.hour.into(),
            Specifier::Minute => t.minute.into(),
            Specifier::Second => t.second.into(),
            Specifier::DayOfYear => t.day_of_year.into(),
        }
    }
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text copied as is (adjacent literal text and `%%` are merged).
    Literal(String),
    /// A named field.
    Field(Field),
    /// A time specifier.
    Time(Specifier),
}

/// The values a template is rendered with.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The bare queue name.
    pub queue: &'a str,
    /// The message id.
    pub message_id: &'a str,
    /// The local time.
    pub time: &'a CivilTime,
}

/// A parsed, statically checked key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    /// Bytes every rendering has: literal text and specifier digits.
    fixed_len: usize,
    /// How often `{tenant}`, `{queue}` and `{message_id}` appear, so a
    /// rendering allocates its exact length once.
    field_uses: [usize; 3],
}

impl Template {
    /// Parses a template or a preset name (`seed`, `default`).
    pub fn parse(template: &str) -> Result<Template, SettingsError> {
        let source = expand_preset(template);
        if source.is_empty() {
            return Err(SettingsError::EmptyTemplate(String::from(
                "the key template is empty; use `default`, `seed` or a template starting with `{tenant}/`",
            )));
        }
        let parts = tokenize(source)?;
        if !source.starts_with("{tenant}/") {
            return Err(SettingsError::UnsafeTemplate(format!(
                "{source:?} does not start with `{{tenant}}/`; every key must live under its tenant"
            )));
        }
        check_segments(source, &parts)?;
        let mut fixed_len = 0;
        let mut field_uses = [0; 3];
        for part in &parts {
            match part {
                Part::Literal(s) => fixed_len += s.len(),
                Part::Field(field) => field_uses[*field as usize] += 1,
                Part::Time(spec) => fixed_len += spec.width(),
            }
        }
        let min_len = fixed_len + field_uses.iter().sum::<usize>();
        if min_len > MAX_KEY_LEN {
            return Err(SettingsError::UnsafeTemplate(format!(
                "the key template renders at least {min_len} bytes; keys are limited to {MAX_KEY_LEN}"
            )));
        }
        Ok(Template {
            parts,
            fixed_len,
            field_uses,
        })
    }

    /// The parsed parts, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Whether the template uses `field`.
    pub fn uses(&self, field: Field) -> bool {
        self.parts.contains(&Part::Field(field))
    }

    /// The exact length of the key rendered with `values`.
    pub fn rendered_len(&self, values: &Values<'_>) -> usize {
        let [tenant, queue, message_id] = self.field_uses;
        self.fixed_len
            + tenant * values.tenant.len()
            + queue * values.queue.len()
            + message_id * values.message_id.len()
    }

    /// Renders a key (one allocation, of its exact length).
    pub fn render(&self, values: &Values<'_>) -> String {
        let mut out = Vec::with_capacity(self.rendered_len(values));
        self.render_into(values, &mut out);
        // SAFETY: `out` is the concatenation of whole `&str`s and ASCII
        // digits, so it is valid UTF-8.
        unsafe { String::from_utf8_unchecked(out) }
    }

    /// Appends a key to `out` (which grows at most once): what
    /// [`Template::render`] returns, without an allocation of its own. The
    /// appended bytes are valid UTF-8.
    pub fn render_into(&self, values: &Values<'_>, out: &mut Vec<u8>) {
        out.reserve(self.rendered_len(values));
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Part::Field(Field::Tenant) => out.extend_from_slice(values.tenant.as_bytes()),
                Part::Field(Field::Queue) => out.extend_from_slice(values.queue.as_bytes()),
                Part::Field(Field::MessageId) => {
                    out.extend_from_slice(values.message_id.as_bytes())
                }
                Part::Time(spec) => push_padded(out, spec.value(values.time), spec.width()),
            }
        }
    }
}

/// Appends `value` in decimal, zero-padded to `width` digits (more digits
/// if it has more).
fn push_padded(out: &mut Vec<u8>, value: u32, width: usize) {
    const MAX_DIGITS: usize = 10; // u32::MAX
    let mut digits = [b'0'; MAX_DIGITS];
    let mut n = value;
    let mut start = MAX_DIGITS;
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for _ in MAX_DIGITS..width {
        out.push(b'0');
    }
    let start = start.min(MAX_DIGITS.saturating_sub(width));
    out.extend_from_slice(&digits[start..]);
}

/// Splits `source` into parts; rejects unknown fields and specifiers, and
/// unsafe literal characters.
fn tokenize(source: &str) -> Result<Vec<Part>, SettingsError> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = source.char_indices();
    while let Some((at, c)) = chars.next() {
        let part = match c {
            '{' => {
                let rest = &source[at + 1..];
                let Some(close) = rest.find('}') else {
                    return Err(SettingsError::UnknownField(format!(
                        "unclosed `{{` at byte {at} of the key template {source:?}"
                    )));
                };
                let name = &rest[..close];
                // Skip the name and the closing brace.
                for _ in 0..=name.chars().count() {
                    chars.next();
                }
                Part::Field(match name {
                    "tenant" => Field::Tenant,
                    "queue" => Field::Queue,
                    "message_id" => Field::MessageId,
                    _ => {
                        return Err(SettingsError::UnknownField(format!(
                            "unknown field `{{{name}}}` at byte {at} of the key template; fields are {{tenant}}, {{queue}}, {{message_id}}"
                        )))
                    }
                })
            }
            '}' => {
                return Err(SettingsError::UnknownField(format!(
                    "`}}` without `{{` at byte {at} of the key template {source:?}"
                )))
            }
            '%' => match chars.next().map(|(_, c)| c) {
                Some('%') => {
                    literal.push('%');
                    continue;
                }
                Some(spec) => Part::Time(match spec {
                    'Y' => Specifier::Year,
                    'm' => Specifier::Month,
                    'd' => Specifier::Day,
                    'H' => Specifier::Hour,
                    'M' => Specifier::Minute,
                    'S' => Specifier::Second,
                    'j' => Specifier::DayOfYear,
                    _ => {
                        return Err(SettingsError::UnknownSpecifier(format!(
                            "unknown specifier `%{}` at byte {at} of the key template; specifiers are %Y %m %d %H %M %S %j %%",
                            spec.escape_debug()
                        )))
                    }
                }),
                None => {
                    return Err(SettingsError::UnknownSpecifier(String::from(
                        "the key template ends with a lone `%` (write `%%` for a literal `%`)",
                    )))
                }
            },
            c if c.is_control() => {
                return Err(SettingsError::UnsafeTemplate(format!(
                    "control character {:?} at byte {at} of the key template",
                    c
                )))
            }
            '\\' => {
                return Err(SettingsError::UnsafeTemplate(format!(
                    "`\\` at byte {at} of the key template; S3 keys here use `/` only"
                )))
            }
            c => {
                literal.push(c);
                continue;
            }
        };
        if !literal.is_empty() {
            parts.push(Part::Literal(core::mem::take(&mut literal)));
        }
        parts.push(part);
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    Ok(parts)
}

/// Rejects a segment made only of literal text that is empty, `.` or `..`.
fn check_segments(source: &str, parts: &[Part]) -> Result<(), SettingsError> {
    let mut text = String::new(); // the current segment's literal text
    let mut dynamic = false; // whether it holds a field or specifier
    let bad = |text: &str| -> SettingsError {
        let what = if text.is_empty() {
            String::from("an empty segment (`//` or a trailing `/`)")
        } else {
            format!("a `{text}` segment")
        };
        SettingsError::UnsafeTemplate(format!(
            "the key template {source:?} yields {what}; segments between `/` must not be empty, `.` or `..`"
        ))
    };
    let unsafe_segment = |text: &str, dynamic: bool| !dynamic && matches!(text, "" | "." | "..");
    for part in parts {
        match part {
            Part::Literal(s) => {
                let mut pieces = s.split('/');
                // The first piece continues the current segment.
                text.push_str(pieces.next().unwrap_or(""));
                for piece in pieces {
                    if unsafe_segment(&text, dynamic) {
                        return Err(bad(&text));
                    }
                    text.clear();
                    text.push_str(piece);
                    dynamic = false;
                }
            }
            Part::Field(_) | Part::Time(_) => dynamic = true,
        }
    }
    if unsafe_segment(&text, dynamic) {
        return Err(bad(&text));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, doy: u16) -> CivilTime {
        CivilTime {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
            day_of_year: doy,
        }
    }

    fn render(template: &str, time: &CivilTime) -> String {
        let values = Values {
            tenant: "acme",
            queue: "acme-prismacloud-auditlog.fifo",
            message_id: "m-1",
            time,
        };
        let template = Template::parse(template).unwrap();
        let key = template.render(&values);
        assert_eq!(template.rendered_len(&values), key.len(), "{key}");
        key
    }

    fn case(template: &str) -> &'static str {
        match Template::parse(template) {
            Ok(_) => "ok",
            Err(e) => e.case(),
        }
    }

    #[test]
    fn presets() {
        let time = t(2025, 6, 27, 11, 32, 20, 178);
        assert_eq!(
            render("seed", &time),
            "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220.json"
        );
        assert_eq!(
            render("default", &time),
            "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220-m-1.json"
        );
        assert_eq!(Template::parse("seed"), Template::parse(SEED));
        assert_eq!(expand_preset("Seed"), "Seed");
    }

    #[test]
    fn fields_and_specifiers() {
        let time = t(2024, 2, 9, 3, 4, 5, 40);
        assert_eq!(
            render("{tenant}/{queue}/%j/%H%M%S/100%%-{message_id}", &time),
            "acme/acme-prismacloud-auditlog.fifo/040/030405/100%-m-1"
        );
        assert_eq!(
            render("{tenant}/%Y-%j", &t(1969, 12, 31, 0, 0, 0, 365)),
            "acme/1969-365"
        );
        assert_eq!(
            render("{tenant}/%Y", &t(9999, 1, 1, 0, 0, 0, 1)),
            "acme/9999"
        );
        assert_eq!(render("{tenant}/{tenant}", &time), "acme/acme");
        assert_eq!(render("{tenant}/日本/%%%%", &time), "acme/日本/%%");
        let tpl = Template::parse("{tenant}/a%%b%Y").unwrap();
        assert_eq!(
            tpl.parts(),
            &[
                Part::Field(Field::Tenant),
                Part::Literal("/a%b".into()),
                Part::Time(Specifier::Year)
            ]
        );
        assert!(tpl.uses(Field::Tenant));
        assert!(!tpl.uses(Field::MessageId));
    }

    #[test]
    fn padding() {
        let mut s = Vec::new();
        push_padded(&mut s, 0, 2);
        push_padded(&mut s, 7, 3);
        push_padded(&mut s, 12345, 2);
        assert_eq!(s, b"0000712345");
        s.clear();
        push_padded(&mut s, u32::MAX, 12);
        push_padded(&mut s, 2025, 4);
        assert_eq!(s, b"0042949672952025");
    }

    #[test]
    fn errors() {
        assert_eq!(case(""), "empty-template");
        assert_eq!(case("{tenant}/{x}"), "unknown-field");
        assert_eq!(case("{tenant}/{Tenant}"), "unknown-field");
        assert_eq!(case("{tenant}/{}"), "unknown-field");
        assert_eq!(case("{tenant}/{tenant"), "unknown-field");
        assert_eq!(case("{tenant}/a}"), "unknown-field");
        assert_eq!(case("{tenant}/{a{tenant}}"), "unknown-field");
        assert_eq!(case("{tenant}/%y"), "unknown-specifier");
        assert_eq!(case("{tenant}/%"), "unknown-specifier");
        assert_eq!(case("{tenant}/x%"), "unknown-specifier");
        assert_eq!(case("{tenant}/%é"), "unknown-specifier");
        assert_eq!(case("{tenant}"), "unsafe-template");
        assert_eq!(case("{tenant}/"), "unsafe-template");
        assert_eq!(case("/{tenant}/x"), "unsafe-template");
        assert_eq!(case("x/{tenant}/y"), "unsafe-template");
        assert_eq!(case("%Y/{tenant}/y"), "unsafe-template");
        assert_eq!(case("{queue}/x"), "unsafe-template");
        assert_eq!(case(" {tenant}/x"), "unsafe-template");
        assert_eq!(case("{tenant}//x"), "unsafe-template");
        assert_eq!(case("{tenant}/./x"), "unsafe-template");
        assert_eq!(case("{tenant}/../x"), "unsafe-template");
        assert_eq!(case("{tenant}/x/.."), "unsafe-template");
        assert_eq!(case("{tenant}/x/."), "unsafe-template");
        assert_eq!(case("{tenant}/x/"), "unsafe-template");
        assert_eq!(case("{tenant}/x\ny"), "unsafe-template");
        assert_eq!(case("{tenant}/x\u{7f}"), "unsafe-template");
        assert_eq!(case("{tenant}/x\\y"), "unsafe-template");
        assert_eq!(
            case(&format!("{{tenant}}/{}", "x".repeat(1025))),
            "unsafe-template"
        );
        assert_eq!(case(&format!("{{tenant}}/{}", "x".repeat(1022))), "ok");
        assert_eq!(
            case(&format!("{{tenant}}/{}", "x".repeat(1023))),
            "unsafe-template"
        );
        assert_eq!(
            case(&format!("{{tenant}}/{}%Y", "x".repeat(1019))),
            "unsafe-template"
        );
        // Segments that hold a field or specifier are never '.' or '..'.
        assert_eq!(case("{tenant}/.{queue}/..%Y/.{message_id}./%%"), "ok");
        assert_eq!(case("{tenant}/..x/x../.../%%./"), "unsafe-template");
        assert_eq!(case("{tenant}/..x/x../..."), "ok");
        assert_eq!(case("{tenant}/a/%%"), "ok");
        assert_eq!(case("{tenant}/a/%%%%"), "ok");
    }

    #[test]
    fn error_details_name_the_problem() {
        let e = Template::parse("{tenant}/{nope}").unwrap_err();
        assert!(e.detail().contains("{nope}"), "{e}");
        let e = Template::parse("{tenant}/%q").unwrap_err();
        assert!(e.detail().contains("%q"), "{e}");
        let e = Template::parse("{tenant}/../x").unwrap_err();
        assert!(e.detail().contains("`..`"), "{e}");
    }
}
