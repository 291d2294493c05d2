//! The router: settings, messages, placements and errors (the Rust mirror of
//! the WIT interface `audit-archiver:routing/router`), and the routing of one
//! message.
//!
//! [`Router::new`] validates [`Settings`] once; [`Router::route`] then places
//! a [`Message`], checking in this order: the queue (bare name, then tenant),
//! the message id, the time (from the chosen [`TimeSource`], in the
//! configured offset), and finally the rendered key with [`check_key`]. The
//! first failed check is the error. Routing is a pure function: no clock, no
//! randomness, no I/O, no hash-map iteration, no floating point.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use crate::event::{earliest_timestamp, EventError};
use crate::key::{check_key, check_message_id, load_word};
use crate::queue::{check_queue_name, check_tenant, queue_name, tenant_from_name};
use crate::template::{Template, Values};
use crate::time::{format_offset, local_time, MAX_OFFSET_MINUTES};

/// Where the time that names the object comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum TimeSource {
    /// `ApproximateFirstReceiveTimestamp` (the default; the reference layout).
    #[default]
    FirstReceive,
    /// `SentTimestamp`.
    Sent,
    /// The audit record's own `timestamp` (the earliest, for an array body).
    Event,
}

impl TimeSource {
    /// Every time source, in WIT order.
    pub const ALL: [TimeSource; 3] = [
        TimeSource::FirstReceive,
        TimeSource::Sent,
        TimeSource::Event,
    ];

    /// The WIT / command-line name: `first-receive`, `sent` or `event`.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeSource::FirstReceive => "first-receive",
            TimeSource::Sent => "sent",
            TimeSource::Event => "event",
        }
    }
}

impl fmt::Display for TimeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A time-source name that is not `first-receive`, `sent` or `event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTimeSource(pub String);

impl fmt::Display for UnknownTimeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown time source {:?}; expected first-receive, sent or event",
            self.0
        )
    }
}

impl core::error::Error for UnknownTimeSource {}

impl FromStr for TimeSource {
    type Err = UnknownTimeSource;

    /// Parses `first-receive`, `sent` or `event` (exactly; case-sensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TimeSource::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTimeSource(String::from(s)))
    }
}

/// An explicit tenant for one queue, overriding the naming rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantOverride {
    /// The bare queue name (not a URL or ARN).
    pub queue: String,
    /// The tenant for that queue.
    pub tenant: String,
}

/// How messages are routed (the WIT `settings` record).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Settings {
    /// A preset name (`seed`, `default`) or a template; see [`crate::template`].
    pub key_template: String,
    /// Which timestamp names the object.
    pub time_source: TimeSource,
    /// The offset from UTC in minutes, within -840..=840 (JST is 540).
    pub utc_offset_minutes: i16,
    /// Queue-to-tenant mappings that win over the naming rule. A queue may be
    /// listed twice only with the same tenant.
    pub tenant_overrides: Vec<TenantOverride>,
}

impl Default for Settings {
    /// Template `default`, time source `first-receive`, JST (540), no overrides.
    fn default() -> Self {
        Settings {
            key_template: String::from("default"),
            time_source: TimeSource::FirstReceive,
            utc_offset_minutes: crate::time::JST_OFFSET_MINUTES,
            tenant_overrides: Vec::new(),
        }
    }
}

/// One SQS message, borrowed (the WIT `message` record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Message<'a> {
    /// The SQS `MessageId`.
    pub message_id: &'a str,
    /// The queue: ARN, URL or bare name.
    pub queue: &'a str,
    /// The body, unchanged (read only by [`TimeSource::Event`]).
    pub body: &'a str,
    /// `ApproximateFirstReceiveTimestamp`, epoch ms.
    pub first_receive_ms: Option<u64>,
    /// `SentTimestamp`, epoch ms.
    pub sent_ms: Option<u64>,
}

/// Where a message is archived (the WIT `placement` record).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Placement {
    /// The tenant.
    pub tenant: String,
    /// The object key; it passes [`check_key`] for `tenant`.
    pub key: String,
    /// The time that named the object, epoch ms (UTC).
    pub time_ms: u64,
}

/// Where a message of a packed batch is archived ([`Router::route_packed`],
/// the WIT `packed-placement`): a [`Placement`] whose tenant and key are the
/// next `tenant_len` and then `key_len` bytes of the batch's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackedPlacement {
    /// The tenant's length in bytes.
    pub tenant_len: usize,
    /// The key's length in bytes.
    pub key_len: usize,
    /// The time that named the object, epoch ms (UTC).
    pub time_ms: u64,
}

/// Why settings are invalid (the WIT `settings-error` variant). Each case
/// carries a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SettingsError {
    /// The template is empty.
    EmptyTemplate(String),
    /// The template uses an unknown `{field}`, or has an unclosed `{` or a
    /// stray `}`.
    UnknownField(String),
    /// The template uses an unknown `%` specifier, or ends with `%`.
    UnknownSpecifier(String),
    /// The template could yield an unsafe key.
    UnsafeTemplate(String),
    /// The UTC offset is outside -840..=840 minutes.
    InvalidOffset(String),
    /// A tenant override has an invalid queue or tenant, or conflicts with
    /// another.
    InvalidTenantOverride(String),
}

impl SettingsError {
    /// The WIT case name, e.g. `unknown-field`.
    pub fn case(&self) -> &'static str {
        match self {
            SettingsError::EmptyTemplate(_) => "empty-template",
            SettingsError::UnknownField(_) => "unknown-field",
            SettingsError::UnknownSpecifier(_) => "unknown-specifier",
            SettingsError::UnsafeTemplate(_) => "unsafe-template",
            SettingsError::InvalidOffset(_) => "invalid-offset",
            SettingsError::InvalidTenantOverride(_) => "invalid-tenant-override",
        }
    }

    /// The detail carried by the case.
    pub fn detail(&self) -> &str {
        match self {
            SettingsError::EmptyTemplate(d)
            | SettingsError::UnknownField(d)
            | SettingsError::UnknownSpecifier(d)
            | SettingsError::UnsafeTemplate(d)
            | SettingsError::InvalidOffset(d)
            | SettingsError::InvalidTenantOverride(d) => d,
        }
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let title = match self {
            SettingsError::EmptyTemplate(_) => "empty key template",
            SettingsError::UnknownField(_) => "unknown key template field",
            SettingsError::UnknownSpecifier(_) => "unknown key template specifier",
            SettingsError::UnsafeTemplate(_) => "unsafe key template",
            SettingsError::InvalidOffset(_) => "invalid UTC offset",
            SettingsError::InvalidTenantOverride(_) => "invalid tenant override",
        };
        write!(f, "{title}: {}", self.detail())
    }
}

impl core::error::Error for SettingsError {}

/// Why one message cannot be routed (the WIT `route-error` variant). Each
/// case carries a human-readable detail naming the message id and queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteError {
    /// The settings are invalid.
    InvalidSettings(SettingsError),
    /// The queue yields no valid tenant, or its name is unusable.
    InvalidQueue(String),
    /// The message id cannot be part of a key.
    InvalidMessageId(String),
    /// The chosen time source is absent.
    MissingTime(String),
    /// The chosen time is unparseable or out of range.
    InvalidTime(String),
    /// The `event` time source needs a JSON object or array body.
    InvalidBody(String),
    /// The resulting key would be unsafe.
    UnsafeKey(String),
}

impl RouteError {
    /// The WIT case name, e.g. `missing-time`.
    pub fn case(&self) -> &'static str {
        match self {
            RouteError::InvalidSettings(_) => "invalid-settings",
            RouteError::InvalidQueue(_) => "invalid-queue",
            RouteError::InvalidMessageId(_) => "invalid-message-id",
            RouteError::MissingTime(_) => "missing-time",
            RouteError::InvalidTime(_) => "invalid-time",
            RouteError::InvalidBody(_) => "invalid-body",
            RouteError::UnsafeKey(_) => "unsafe-key",
        }
    }

    /// The detail carried by the case (for `invalid-settings`, the settings
    /// error's detail).
    pub fn detail(&self) -> &str {
        match self {
            RouteError::InvalidSettings(e) => e.detail(),
            RouteError::InvalidQueue(d)
            | RouteError::InvalidMessageId(d)
            | RouteError::MissingTime(d)
            | RouteError::InvalidTime(d)
            | RouteError::InvalidBody(d)
            | RouteError::UnsafeKey(d) => d,
        }
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let title = match self {
            RouteError::InvalidSettings(e) => return write!(f, "invalid settings: {e}"),
            RouteError::InvalidQueue(_) => "invalid queue",
            RouteError::InvalidMessageId(_) => "invalid message id",
            RouteError::MissingTime(_) => "missing time",
            RouteError::InvalidTime(_) => "invalid time",
            RouteError::InvalidBody(_) => "invalid body",
            RouteError::UnsafeKey(_) => "unsafe key",
        };
        write!(f, "{title}: {}", self.detail())
    }
}

impl core::error::Error for RouteError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            RouteError::InvalidSettings(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SettingsError> for RouteError {
    fn from(e: SettingsError) -> Self {
        RouteError::InvalidSettings(e)
    }
}

/// Validated settings, ready to route many messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Router {
    template: Template,
    time_source: TimeSource,
    utc_offset_minutes: i16,
    overrides: BTreeMap<String, String>,
}

impl Router {
    /// Validates `settings`: the template, the offset, then the overrides
    /// (each queue a bare queue name, each tenant valid, no queue mapped to
    /// two different tenants).
    pub fn new(settings: &Settings) -> Result<Router, SettingsError> {
        let template = Template::parse(&settings.key_template)?;
        let offset = settings.utc_offset_minutes;
        if offset.unsigned_abs() > MAX_OFFSET_MINUTES.unsigned_abs() {
            return Err(SettingsError::InvalidOffset(format!(
                "{offset} minutes is outside -840..=840 (UTC-14:00 to UTC+14:00); JST is 540"
            )));
        }
        let mut overrides = BTreeMap::new();
        for (i, o) in settings.tenant_overrides.iter().enumerate() {
            let what = || {
                format!(
                    "tenant override {i} ({} -> {})",
                    quoted(&o.queue),
                    quoted(&o.tenant)
                )
            };
            if let Err(why) = check_queue_name(&o.queue) {
                return Err(SettingsError::InvalidTenantOverride(format!(
                    "{}: {why}; give the bare queue name, not a URL or ARN",
                    what()
                )));
            }
            if let Err(why) = check_tenant(&o.tenant) {
                return Err(SettingsError::InvalidTenantOverride(format!(
                    "{}: {why}",
                    what()
                )));
            }
            if let Some(previous) = overrides.insert(o.queue.clone(), o.tenant.clone()) {
                if previous != o.tenant {
                    return Err(SettingsError::InvalidTenantOverride(format!(
                        "{}: the queue is already mapped to tenant {}",
                        what(),
                        quoted(&previous)
                    )));
                }
            }
        }
        Ok(Router {
            template,
            time_source: settings.time_source,
            utc_offset_minutes: offset,
            overrides,
        })
    }

    /// The parsed key template.
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// The configured time source.
    pub fn time_source(&self) -> TimeSource {
        self.time_source
    }

    /// The configured UTC offset, in minutes.
    pub fn utc_offset_minutes(&self) -> i16 {
        self.utc_offset_minutes
    }

    /// The tenant of a queue (ARN, URL or bare name): its override, else the
    /// naming rule. `Err` is [`RouteError::InvalidQueue`].
    pub fn tenant(&self, queue: &str) -> Result<String, RouteError> {
        self.queue_and_tenant(queue, None)
            .map(|(_, tenant)| String::from(tenant))
    }

    fn queue_and_tenant<'a>(
        &'a self,
        queue: &'a str,
        message_id: Option<&str>,
    ) -> Result<(&'a str, &'a str), RouteError> {
        let who = || match message_id {
            Some(id) => format!("message {} from queue {}", quoted(id), quoted(queue)),
            None => format!("queue {}", quoted(queue)),
        };
        let name = queue_name(queue)
            .map_err(|why| RouteError::InvalidQueue(format!("{}: {why}", who())))?;
        if let Some(tenant) = self.overrides.get(name) {
            return Ok((name, tenant));
        }
        let tenant = tenant_from_name(name);
        check_tenant(tenant).map_err(|why| {
            RouteError::InvalidQueue(format!(
                "{}: the queue name {name:?} gives tenant {tenant:?}, which is invalid ({why}); add a tenant override for this queue",
                who()
            ))
        })?;
        Ok((name, tenant))
    }

    /// Routes one message. See the module docs for the order of checks.
    pub fn route(&self, message: &Message<'_>) -> Result<Placement, RouteError> {
        let (name, tenant) = self.queue_and_tenant(message.queue, Some(message.message_id))?;
        self.place(message, name, tenant)
    }

    /// Routes many messages; one result per message, in order, each the same
    /// as [`Router::route`] would give.
    pub fn route_batch(&self, messages: &[Message<'_>]) -> Vec<Result<Placement, RouteError>> {
        self.route_all(messages.iter().copied()).collect()
    }

    /// Routes messages lazily, in order; each result is the same as
    /// [`Router::route`] would give. A queue equal to the previous message's
    /// is not parsed again (a batch usually comes from one queue).
    pub fn route_all<'a, I>(
        &'a self,
        messages: I,
    ) -> impl Iterator<Item = Result<Placement, RouteError>> + 'a
    where
        I: IntoIterator<Item = Message<'a>>,
        I::IntoIter: 'a,
    {
        // The last queue that routed, with its bare name and tenant.
        let mut last: Option<(&'a str, &'a str, &'a str)> = None;
        messages.into_iter().map(move |message| {
            let (name, tenant) = match last {
                Some((queue, name, tenant)) if same_text(queue, message.queue) => (name, tenant),
                _ => {
                    let (name, tenant) =
                        self.queue_and_tenant(message.queue, Some(message.message_id))?;
                    last = Some((message.queue, name, tenant));
                    (name, tenant)
                }
            };
            self.place(&message, name, tenant)
        })
    }

    /// Routes messages that all come from `queue` (their own `queue` is not
    /// read) like [`Router::route_all`], but instead of allocating each
    /// placement's tenant and key, appends them to `text` (the tenant, then
    /// the key) and gives `each` their lengths: one result per message, in
    /// order, each the same as [`Router::route`] would give for the message
    /// with `queue` (the WIT `route-queue`). A failed message appends nothing.
    pub fn route_packed<'a, I>(
        &self,
        queue: &str,
        messages: I,
        text: &mut String,
        mut each: impl FnMut(Result<PackedPlacement, RouteError>),
    ) where
        I: IntoIterator<Item = Message<'a>>,
    {
        // SAFETY: only whole `&str`s (tenants) and `place_key`'s output
        // (valid UTF-8) are appended, and it truncates only back to where it
        // started appending: `text` stays valid UTF-8.
        let out = unsafe { text.as_mut_vec() };
        // The queue's bare name and tenant, once it routed.
        let mut parsed: Option<(&str, &str)> = None;
        let mut messages = messages.into_iter();
        let mut reserved = false;
        while let Some(message) = messages.next() {
            let message = Message { queue, ..message };
            let found = match parsed {
                Some(found) => Ok(found),
                // Its error names the message, so an invalid queue is parsed
                // again for each one (the slow path only).
                None => self.queue_and_tenant(queue, Some(message.message_id)),
            };
            let result = found.and_then(|(name, tenant)| {
                parsed = Some((name, tenant));
                let start = out.len();
                out.extend_from_slice(tenant.as_bytes());
                match self.place_key(&message, name, tenant, out) {
                    Ok(time_ms) => {
                        if !reserved {
                            // Room for the rest, if their keys are as long as
                            // the first: one growth instead of a doubling series.
                            reserved = true;
                            out.reserve((out.len() - start) * messages.size_hint().0);
                        }
                        Ok(PackedPlacement {
                            tenant_len: tenant.len(),
                            key_len: out.len() - start - tenant.len(),
                            time_ms,
                        })
                    }
                    Err(e) => {
                        out.truncate(start);
                        Err(e)
                    }
                }
            });
            each(result);
        }
    }

    /// Routes `message`, whose queue has the bare name `name` and tenant `tenant`.
    fn place(
        &self,
        message: &Message<'_>,
        name: &str,
        tenant: &str,
    ) -> Result<Placement, RouteError> {
        let mut key = Vec::new();
        let time_ms = self.place_key(message, name, tenant, &mut key)?;
        Ok(Placement {
            tenant: String::from(tenant),
            // SAFETY: `place_key` appends valid UTF-8 only.
            key: unsafe { String::from_utf8_unchecked(key) },
            time_ms,
        })
    }

    /// Routes `message` like [`Router::place`], appending its key to `out`
    /// (nothing on an error); returns the time that named it.
    fn place_key(
        &self,
        message: &Message<'_>,
        name: &str,
        tenant: &str,
        out: &mut Vec<u8>,
    ) -> Result<u64, RouteError> {
        let who = || {
            format!(
                "message {} from queue {}",
                quoted(message.message_id),
                quoted(message.queue)
            )
        };
        check_message_id(message.message_id)
            .map_err(|why| RouteError::InvalidMessageId(format!("{}: {why}", who())))?;
        let time_ms = self.time_ms(message, &who)?;
        let Some(time) = local_time(time_ms, self.utc_offset_minutes) else {
            return Err(RouteError::InvalidTime(format!(
                "{}: time {time_ms} ms (source {}) is past the year 9999 at UTC{}",
                who(),
                self.time_source,
                format_offset(self.utc_offset_minutes)
            )));
        };
        let start = out.len();
        self.template.render_into(
            &Values {
                tenant,
                queue: name,
                message_id: message.message_id,
                time: &time,
            },
            out,
        );
        // SAFETY: `render_into` appends valid UTF-8 only.
        let key = unsafe { core::str::from_utf8_unchecked(&out[start..]) };
        if let Err(why) = check_key(key, tenant) {
            let error =
                RouteError::UnsafeKey(format!("{}: {why} (key starts {})", who(), quoted(key)));
            out.truncate(start);
            return Err(error);
        }
        Ok(time_ms)
    }

    /// The message's time from the configured source, epoch ms.
    fn time_ms(&self, message: &Message<'_>, who: &dyn Fn() -> String) -> Result<u64, RouteError> {
        let attribute = |value: Option<u64>, name: &str| {
            value.ok_or_else(|| {
                RouteError::MissingTime(format!(
                    "{}: no {name} attribute (time source {})",
                    who(),
                    self.time_source
                ))
            })
        };
        match self.time_source {
            TimeSource::FirstReceive => {
                attribute(message.first_receive_ms, "ApproximateFirstReceiveTimestamp")
            }
            TimeSource::Sent => attribute(message.sent_ms, "SentTimestamp"),
            TimeSource::Event => earliest_timestamp(message.body).map_err(|e| match e {
                EventError::InvalidBody(why) => {
                    RouteError::InvalidBody(format!("{}: {why} (time source event)", who()))
                }
                EventError::MissingTime(why) => {
                    RouteError::MissingTime(format!("{}: {why} (time source event)", who()))
                }
                EventError::InvalidTime(why) => {
                    RouteError::InvalidTime(format!("{}: {why} (time source event)", who()))
                }
            }),
        }
    }
}

/// Checks settings once (the WIT `validate-settings`).
pub fn validate_settings(settings: &Settings) -> Result<(), SettingsError> {
    Router::new(settings).map(|_| ())
}

/// Routes one message (the WIT `route`).
pub fn route(settings: &Settings, message: &Message<'_>) -> Result<Placement, RouteError> {
    Router::new(settings)?.route(message)
}

/// Routes many messages with the same settings, validated once; one result
/// per message, in order (the WIT `route-batch`).
pub fn route_batch(
    settings: &Settings,
    messages: &[Message<'_>],
) -> Vec<Result<Placement, RouteError>> {
    match Router::new(settings) {
        Ok(router) => router.route_batch(messages),
        Err(e) => messages
            .iter()
            .map(|_| Err(RouteError::InvalidSettings(e.clone())))
            .collect(),
    }
}

/// Whether `a` and `b` are the same text, compared eight bytes at a time
/// (the component's libc `memcmp` goes one byte at a time, and every message
/// of a batch has its queue compared with the previous one's).
fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let (mut a_words, mut b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let words_equal = (&mut a_words)
        .zip(&mut b_words)
        .all(|(x, y)| load_word(x) == load_word(y));
    words_equal
        && a_words
            .remainder()
            .iter()
            .zip(b_words.remainder())
            .all(|(x, y)| x == y)
}

/// `s` quoted and escaped for a message (control characters cannot forge log
/// lines), cut after 160 bytes.
fn quoted(s: &str) -> String {
    const MAX: usize = 160;
    if s.len() <= MAX {
        return format!("{s:?}");
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::alternate_key;
    use proptest::prelude::*;

    const Q: &str =
        "https://sqs.ap-northeast-1.amazonaws.com/123456789012/acme-prismacloud-auditlog.fifo";
    const T: u64 = 1_750_991_540_913; // 2025-06-27T11:32:20.913+09:00

    fn msg(id: &'static str, queue: &'static str) -> Message<'static> {
        Message {
            message_id: id,
            queue,
            body: r#"{"timestamp": 1750991540913}"#,
            first_receive_ms: Some(T),
            sent_ms: Some(T - 1000),
        }
    }

    fn settings(template: &str) -> Settings {
        Settings {
            key_template: template.into(),
            ..Settings::default()
        }
    }

    #[test]
    fn seed_and_default() {
        let m = msg("m-1", Q);
        let seed = route(&settings("seed"), &m).unwrap();
        assert_eq!(
            seed,
            Placement {
                tenant: "acme".into(),
                key: "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220.json".into(),
                time_ms: T,
            }
        );
        let default = route(&Settings::default(), &m).unwrap();
        assert_eq!(
            default.key,
            "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220-m-1.json"
        );
        // The same second, another message: seed collides, default does not.
        let m2 = Message {
            message_id: "m-2",
            first_receive_ms: Some(T + 50),
            ..m
        };
        assert_eq!(route(&settings("seed"), &m2).unwrap().key, seed.key);
        assert_ne!(route(&Settings::default(), &m2).unwrap().key, default.key);
        assert_eq!(
            alternate_key(&seed.key, "m-2"),
            "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220-m-2.json"
        );
    }

    #[test]
    fn time_sources() {
        let m = msg("m-1", "acme");
        let at = |source: TimeSource, m: &Message<'_>| {
            route(
                &Settings {
                    key_template: "{tenant}/%H%M%S".into(),
                    time_source: source,
                    ..Settings::default()
                },
                m,
            )
        };
        assert_eq!(at(TimeSource::FirstReceive, &m).unwrap().key, "acme/113220");
        assert_eq!(at(TimeSource::Sent, &m).unwrap().key, "acme/113219");
        assert_eq!(at(TimeSource::Sent, &m).unwrap().time_ms, T - 1000);
        let e = Message {
            body: r#"[{"timestamp": 1750991540913}, {"timestamp": 1750000000000}]"#,
            ..m
        };
        let p = at(TimeSource::Event, &e).unwrap();
        assert_eq!(
            (p.key.as_str(), p.time_ms),
            ("acme/000640", 1_750_000_000_000)
        );
        let none = Message {
            first_receive_ms: None,
            sent_ms: None,
            body: "",
            ..m
        };
        for source in TimeSource::ALL {
            let err = at(source, &none).unwrap_err();
            let want = if source == TimeSource::Event {
                "invalid-body"
            } else {
                "missing-time"
            };
            assert_eq!(err.case(), want);
            assert!(
                err.detail().contains("\"m-1\"") && err.detail().contains("\"acme\""),
                "{err}"
            );
        }
        let far = Message {
            first_receive_ms: Some(u64::MAX),
            ..m
        };
        assert_eq!(
            at(TimeSource::FirstReceive, &far).unwrap_err().case(),
            "invalid-time"
        );
    }

    #[test]
    fn time_source_names() {
        for t in TimeSource::ALL {
            assert_eq!(t.as_str().parse::<TimeSource>(), Ok(t));
            assert_eq!(t.to_string(), t.as_str());
        }
        assert!("First-Receive".parse::<TimeSource>().is_err());
        assert!(""
            .parse::<TimeSource>()
            .unwrap_err()
            .to_string()
            .contains("first-receive"));
        assert_eq!(TimeSource::default(), TimeSource::FirstReceive);
    }

    #[test]
    fn tenants_and_overrides() {
        let s = Settings {
            tenant_overrides: vec![
                TenantOverride {
                    queue: "acme-prismacloud-auditlog.fifo".into(),
                    tenant: "ACME_corp".into(),
                },
                TenantOverride {
                    queue: "-odd".into(),
                    tenant: "odd".into(),
                },
                TenantOverride {
                    queue: "-odd".into(),
                    tenant: "odd".into(),
                },
            ],
            ..settings("seed")
        };
        let r = Router::new(&s).unwrap();
        assert_eq!(r.tenant(Q).unwrap(), "ACME_corp");
        assert_eq!(r.tenant("arn:aws:sqs:us-east-1:1:-odd").unwrap(), "odd");
        assert_eq!(r.tenant("beta.fifo").unwrap(), "beta");
        assert_eq!(r.tenant("beta_2-x").unwrap(), "beta_2");
        assert_eq!(r.tenant("-x").unwrap_err().case(), "invalid-queue");
        assert_eq!(r.tenant(".fifo").unwrap_err().case(), "invalid-queue");
        assert_eq!(
            r.tenant("https://h/1/q/x").unwrap_err().case(),
            "invalid-queue"
        );
        let p = r.route(&msg("m", Q)).unwrap();
        assert_eq!(p.tenant, "ACME_corp");
        assert!(p
            .key
            .starts_with("ACME_corp/2025/06/27/prismacloud-auditlog-ACME_corp-"));
    }

    #[test]
    fn settings_errors() {
        let bad = |s: Settings| Router::new(&s).unwrap_err().case();
        assert_eq!(bad(settings("")), "empty-template");
        assert_eq!(bad(settings("{tenant}/{nope}")), "unknown-field");
        assert_eq!(bad(settings("{tenant}/%Q")), "unknown-specifier");
        assert_eq!(bad(settings("{tenant}/../x")), "unsafe-template");
        for offset in [841, -841, i16::MAX, i16::MIN] {
            let s = Settings {
                utc_offset_minutes: offset,
                ..Settings::default()
            };
            assert_eq!(bad(s), "invalid-offset");
        }
        for offset in [840, -840, 0, 345, -300] {
            let s = Settings {
                utc_offset_minutes: offset,
                ..Settings::default()
            };
            assert!(Router::new(&s).is_ok());
        }
        let with = |queue: &str, tenant: &str| Settings {
            tenant_overrides: vec![TenantOverride {
                queue: queue.into(),
                tenant: tenant.into(),
            }],
            ..Settings::default()
        };
        assert_eq!(bad(with("", "t")), "invalid-tenant-override");
        assert_eq!(bad(with(Q, "t")), "invalid-tenant-override");
        assert_eq!(bad(with("q", "")), "invalid-tenant-override");
        assert_eq!(bad(with("q", "a-b")), "invalid-tenant-override");
        assert_eq!(bad(with("q", "..")), "invalid-tenant-override");
        let mut conflict = with("q", "a");
        conflict.tenant_overrides.push(TenantOverride {
            queue: "q".into(),
            tenant: "b".into(),
        });
        assert_eq!(bad(conflict), "invalid-tenant-override");
        // Settings errors surface through route and route-batch too.
        let err = route(&settings(""), &msg("m", Q)).unwrap_err();
        assert_eq!(err.case(), "invalid-settings");
        assert!(matches!(
            err,
            RouteError::InvalidSettings(SettingsError::EmptyTemplate(_))
        ));
        assert!(core::error::Error::source(&err).is_some());
        let batch = route_batch(&settings("%"), &[msg("a", Q), msg("b", Q)]);
        assert_eq!(batch.len(), 2);
        assert!(batch
            .iter()
            .all(|r| r.as_ref().unwrap_err().case() == "invalid-settings"));
        assert_eq!(validate_settings(&Settings::default()), Ok(()));
    }

    #[test]
    fn route_errors() {
        let r = Router::new(&Settings::default()).unwrap();
        let case = |m: Message<'_>| r.route(&m).map(|p| p.key).unwrap_err().case();
        assert_eq!(case(msg("m", "")), "invalid-queue");
        assert_eq!(case(msg("m", "-x")), "invalid-queue");
        assert_eq!(case(msg("m", "a b")), "invalid-queue");
        assert_eq!(case(msg("", Q)), "invalid-message-id");
        assert_eq!(case(msg("a/b", Q)), "invalid-message-id");
        assert_eq!(case(msg("..", Q)), "invalid-message-id");
        assert_eq!(case(msg("a\nb", Q)), "invalid-message-id");
        let long_queue = format!("q-{}", "x".repeat(83));
        let long_id = "i".repeat(128);
        let r = Router::new(&settings(&format!(
            "{{tenant}}/{}/{{queue}}-{{message_id}}",
            "x".repeat(900)
        )))
        .unwrap();
        let err = r
            .route(&Message {
                message_id: &long_id,
                queue: &long_queue,
                ..msg("", "")
            })
            .unwrap_err();
        assert_eq!(err.case(), "unsafe-key");
        assert!(
            err.to_string().starts_with("unsafe key: message \"iii"),
            "{err}"
        );
    }

    #[test]
    fn display_and_detail() {
        let e = RouteError::MissingTime("message \"m\" from queue \"q\": no x".into());
        assert_eq!(
            e.to_string(),
            "missing time: message \"m\" from queue \"q\": no x"
        );
        assert_eq!(e.case(), "missing-time");
        let s = RouteError::InvalidSettings(SettingsError::InvalidOffset("900".into()));
        assert_eq!(s.to_string(), "invalid settings: invalid UTC offset: 900");
        assert_eq!(s.detail(), "900");
        let all = [
            RouteError::InvalidSettings(SettingsError::EmptyTemplate(String::new())),
            RouteError::InvalidQueue(String::new()),
            RouteError::InvalidMessageId(String::new()),
            RouteError::MissingTime(String::new()),
            RouteError::InvalidTime(String::new()),
            RouteError::InvalidBody(String::new()),
            RouteError::UnsafeKey(String::new()),
        ];
        let cases: Vec<_> = all.iter().map(RouteError::case).collect();
        assert_eq!(
            cases,
            [
                "invalid-settings",
                "invalid-queue",
                "invalid-message-id",
                "missing-time",
                "invalid-time",
                "invalid-body",
                "unsafe-key"
            ]
        );
        let settings_cases: Vec<_> = [
            SettingsError::EmptyTemplate(String::new()),
            SettingsError::UnknownField(String::new()),
            SettingsError::UnknownSpecifier(String::new()),
            SettingsError::UnsafeTemplate(String::new()),
            SettingsError::InvalidOffset(String::new()),
            SettingsError::InvalidTenantOverride(String::new()),
        ]
        .iter()
        .map(SettingsError::case)
        .collect();
        assert_eq!(
            settings_cases,
            [
                "empty-template",
                "unknown-field",
                "unknown-specifier",
                "unsafe-template",
                "invalid-offset",
                "invalid-tenant-override"
            ]
        );
        assert_eq!(quoted("a\nb"), "\"a\\nb\"");
        let long = "é".repeat(100);
        assert!(quoted(&long).ends_with("... (200 bytes)"));
    }

    /// Templates built from every kind of piece, safe or not.
    fn template() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("{tenant}".to_string()),
            Just("{queue}".to_string()),
            Just("{message_id}".to_string()),
            Just("/".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("-".to_string()),
            Just("%%".to_string()),
            proptest::sample::select(vec!["%Y", "%m", "%d", "%H", "%M", "%S", "%j"])
                .prop_map(String::from),
            "[a-z._/-]{1,6}",
            any::<String>(),
        ];
        proptest::collection::vec(piece, 0..10)
            .prop_map(|pieces| format!("{{tenant}}/{}", pieces.concat()))
    }

    fn queue() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z0-9_.-]{1,90}",
            "[A-Za-z0-9_.-]{1,90}".prop_map(|n| format!("arn:aws:sqs:us-east-1:123456789012:{n}")),
            "[A-Za-z0-9_.-]{1,90}".prop_map(|n| format!("http://127.0.0.1:4566/000000000000/{n}")),
            any::<String>(),
        ]
    }

    fn message_id() -> impl Strategy<Value = String> {
        prop_oneof!["[A-Za-z0-9._-]{1,130}", any::<String>()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_placement_is_safe_and_deterministic(
            template in template(),
            queue in queue(),
            id in message_id(),
            first in any::<u64>(),
            sent in proptest::option::of(0_u64..300_000_000_000_000),
            body in prop_oneof![any::<String>(), (0_u64..300_000_000_000_000).prop_map(|t| format!(r#"{{"timestamp":{t}}}"#))],
            source in proptest::sample::select(TimeSource::ALL.to_vec()),
            offset in -840_i16..=840,
        ) {
            let settings = Settings {
                key_template: template,
                time_source: source,
                utc_offset_minutes: offset,
                tenant_overrides: vec![],
            };
            let Ok(router) = Router::new(&settings) else { return Ok(()) };
            let m = Message {
                message_id: &id,
                queue: &queue,
                body: &body,
                first_receive_ms: Some(first % 300_000_000_000_000),
                sent_ms: sent,
            };
            let result = router.route(&m);
            prop_assert_eq!(&result, &router.route(&m));
            prop_assert_eq!(&result, &route(&settings, &m));
            prop_assert_eq!(&result, &route_batch(&settings, &[m])[0]);
            match result {
                Ok(p) => {
                    prop_assert!(check_key(&p.key, &p.tenant).is_ok(), "{:?}", p);
                    prop_assert!(check_message_id(&id).is_ok());
                }
                Err(e) => {
                    prop_assert!(!e.detail().is_empty());
                    prop_assert_ne!(e.case(), "invalid-settings");
                }
            }
        }

        #[test]
        fn valid_input_always_routes(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "{tenant}", "{queue}", "{message_id}", "%Y", "%m", "%d", "%H", "%M", "%S",
                    "%j", "%%", "-", "_", ".", "..", "x.json", "/a", "/.{queue}", "/..%Y",
                ]),
                1..12,
            ),
            tenant in "[a-z][a-z0-9_.]{0,20}",
            rest in "[A-Za-z0-9_.-]{0,40}",
            id in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}",
            ms in 0_u64..253_402_300_799_999 - 840 * 60_000,
            offset in -840_i16..=840,
        ) {
            // A field first, so the first segment is never `.` or `..` (the
            // other pieces never make a literal-only segment).
            let template = format!("{{tenant}}/{{message_id}}{}", pieces.concat());
            let queue = format!("{tenant}-{rest}");
            let router = Router::new(&Settings {
                key_template: template.clone(),
                time_source: TimeSource::FirstReceive,
                utc_offset_minutes: offset,
                tenant_overrides: vec![],
            })
            .unwrap();
            let m = Message {
                message_id: &id,
                queue: &queue,
                body: "",
                first_receive_ms: Some(ms),
                sent_ms: None,
            };
            let p = router.route(&m).unwrap();
            prop_assert_eq!(&p.tenant, &tenant);
            prop_assert_eq!(p.time_ms, ms);
            prop_assert!(check_key(&p.key, &p.tenant).is_ok());
        }

        #[test]
        fn same_text_is_equality(a in "[ab]{0,20}", b in "[ab]{0,20}") {
            prop_assert_eq!(same_text(&a, &b), a == b);
            prop_assert!(same_text(&a, &a.clone()));
        }

        #[test]
        fn batches_route_each_message_as_alone(
            picks in proptest::collection::vec((0_usize..5, 0_usize..3), 0..12),
            offset in -840_i16..=840,
        ) {
            // Runs of equal queues (the same text at different addresses
            // too), routable or not, and message ids good or bad.
            let queues = [Q.to_string(), Q.to_string(), "-bad".to_string(), "beta".to_string(), "a b".to_string()];
            let ids = ["m-1", "", "m/2"];
            let messages: Vec<Message<'_>> = picks
                .iter()
                .enumerate()
                .map(|(i, &(q, id))| Message {
                    message_id: ids[id],
                    queue: &queues[q],
                    body: "",
                    first_receive_ms: Some(T + i as u64),
                    sent_ms: None,
                })
                .collect();
            let router = Router::new(&Settings { utc_offset_minutes: offset, ..Settings::default() }).unwrap();
            let alone: Vec<_> = messages.iter().map(|m| router.route(m)).collect();
            prop_assert_eq!(&router.route_batch(&messages), &alone);
            prop_assert_eq!(&route_batch(&Settings { utc_offset_minutes: offset, ..Settings::default() }, &messages), &alone);
        }

        #[test]
        fn packed_batches_route_each_message_as_alone(
            picks in proptest::collection::vec((0_usize..4, any::<bool>()), 0..12),
            queue_pick in 0_usize..4,
            template in template(),
            offset in -840_i16..=840,
        ) {
            // One queue per packed batch, routable or not; ids good or bad,
            // times present or not; any template (long or unsafe keys too).
            let queues = [Q, "-bad", "beta", "a b"];
            let ids = ["m-1", "", "m/2", "é-3"];
            let queue = queues[queue_pick];
            let messages: Vec<Message<'_>> = picks
                .iter()
                .enumerate()
                .map(|(i, &(id, timed))| Message {
                    message_id: ids[id],
                    queue,
                    body: "",
                    first_receive_ms: timed.then_some(T + i as u64 * 86_399_999),
                    sent_ms: None,
                })
                .collect();
            let Ok(router) = Router::new(&Settings { key_template: template, utc_offset_minutes: offset, ..Settings::default() }) else {
                return Ok(());
            };
            let mut text = String::from("kept");
            let mut packed = Vec::new();
            // The queue given to the batch wins over each message's own.
            let elsewhere = messages.iter().map(|m| Message { queue: "other-q", ..*m });
            router.route_packed(queue, elsewhere, &mut text, |r| packed.push(r));
            prop_assert_eq!(packed.len(), messages.len());
            let mut rest = text.strip_prefix("kept").unwrap();
            for (message, got) in messages.iter().zip(packed) {
                let want = router.route(message);
                match (want, got) {
                    (Ok(want), Ok(got)) => {
                        let (tenant, after) = rest.split_at(got.tenant_len);
                        let (key, after) = after.split_at(got.key_len);
                        rest = after;
                        prop_assert_eq!((tenant, key, got.time_ms), (want.tenant.as_str(), want.key.as_str(), want.time_ms));
                    }
                    (Err(want), Err(got)) => prop_assert_eq!(want, got),
                    (want, got) => prop_assert!(false, "route {:?} vs packed {:?}", want, got),
                }
            }
            prop_assert_eq!(rest, "");
        }

        #[test]
        fn settings_never_panic(template in any::<String>(), offset in any::<i16>(), q in any::<String>(), t in any::<String>()) {
            let s = Settings {
                key_template: template,
                time_source: TimeSource::Event,
                utc_offset_minutes: offset,
                tenant_overrides: vec![TenantOverride { queue: q, tenant: t }],
            };
            if let Err(e) = Router::new(&s) {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}
