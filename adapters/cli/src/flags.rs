//! The command line: `audit-archiver route`'s routing flags, with the same
//! names, spellings, environment fallbacks and defaults, validated once into
//! the router's settings.

use routing_client::{Settings, TenantOverride, TimeSource};

/// Why the command stopped.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A flag, the settings or the input cannot be used: exit 2.
    #[error("{0}")]
    Usage(String),
    /// `--help`: the usage, on stdout, exit 0.
    #[error("")]
    Help,
    /// Writing the output failed: exit 1.
    #[error("writing to stdout: {0}")]
    Output(#[from] std::io::Error),
}

impl CommandError {
    /// The exit status.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Help => 0,
            CommandError::Output(_) => 1,
            CommandError::Usage(_) => 2,
        }
    }
}

/// What `--help` prints.
pub const USAGE: &str = "\
Routes a Lambda-shaped SQS event ({\"Records\":[...]}) or NDJSON of SQS records
and prints one JSON line per record, in input order, exactly as
`audit-archiver route` does:
  {\"message_id\":\"...\",\"tenant\":\"...\",\"key\":\"...\"} or {\"message_id\":\"...\",\"error\":\"...\"}

Usage: audit-archiver-route [OPTIONS] < records.ndjson

Options:
  --event FILE|-               The input: a file (the host must grant its
                               directory, e.g. wasmtime run --dir .) or - for
                               stdin [default: -]
  --key-template seed|default|TEMPLATE
                               [env: AUDIT_ARCHIVER_KEY_TEMPLATE] [default: default]
  --time-source first-receive|sent|event
                               [env: AUDIT_ARCHIVER_TIME_SOURCE] [default: first-receive]
  --utc-offset ±HH:MM          [env: AUDIT_ARCHIVER_UTC_OFFSET] [default: +09:00]
  --tenant-map QUEUE=TENANT    Repeatable, or comma-separated
                               [env: AUDIT_ARCHIVER_TENANT_MAP]
  -h, --help                   Print this help

Exit status: 0 done; a failure otherwise (invalid flags, settings or input
are refused before any output, the flag named on stderr).
";

/// The validated command line.
#[derive(Debug)]
pub struct Flags {
    /// The routing settings (still to be checked by the router).
    pub settings: Settings,
    /// The input file, `None` for stdin.
    pub event: Option<String>,
}

impl Flags {
    /// Parses the arguments (without the program name), falling back to the
    /// host's environment variables for unset flags.
    pub fn parse(args: impl Iterator<Item = String>) -> Result<Flags, CommandError> {
        Self::parse_with_env(args, |name| std::env::var(name).ok())
    }

    fn parse_with_env(
        args: impl Iterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Flags, CommandError> {
        let mut key_template = None;
        let mut time_source = None;
        let mut utc_offset = None;
        let mut tenant_map: Vec<String> = Vec::new();
        let mut event = None;
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Err(CommandError::Help);
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) if name.starts_with("--") => {
                    (name.to_string(), Some(value.to_string()))
                }
                _ => (arg.clone(), None),
            };
            let slot = match name.as_str() {
                "--key-template" => &mut key_template,
                "--time-source" => &mut time_source,
                "--utc-offset" => &mut utc_offset,
                "--event" => &mut event,
                "--tenant-map" => {
                    let value = value_of(&name, inline, &mut args)?;
                    tenant_map.extend(value.split(',').map(str::to_string));
                    continue;
                }
                _ => {
                    return Err(CommandError::Usage(format!(
                        "unexpected argument {arg:?}: the options are --event, --key-template, \
                         --time-source, --utc-offset, --tenant-map (see --help)"
                    )))
                }
            };
            *slot = Some(value_of(&name, inline, &mut args)?);
        }
        let key_template = key_template
            .or_else(|| env("AUDIT_ARCHIVER_KEY_TEMPLATE"))
            .unwrap_or_else(|| "default".into());
        let time_source = match time_source
            .or_else(|| env("AUDIT_ARCHIVER_TIME_SOURCE"))
            .as_deref()
        {
            None | Some("first-receive") => TimeSource::FirstReceive,
            Some("sent") => TimeSource::Sent,
            Some("event") => TimeSource::Event,
            Some(other) => {
                return Err(CommandError::Usage(format!(
                    "invalid --time-source {other:?}: use first-receive, sent or event"
                )))
            }
        };
        let utc_offset_minutes = match utc_offset.or_else(|| env("AUDIT_ARCHIVER_UTC_OFFSET")) {
            Some(text) => parse_utc_offset(&text)?,
            None => 9 * 60,
        };
        if tenant_map.is_empty() {
            if let Some(value) = env("AUDIT_ARCHIVER_TENANT_MAP") {
                tenant_map.extend(value.split(',').map(str::to_string));
            }
        }
        let tenant_overrides = tenant_map
            .iter()
            .map(|pair| {
                let (queue, tenant) = pair.split_once('=').ok_or_else(|| {
                    CommandError::Usage(format!(
                        "invalid --tenant-map {pair:?}: expected QUEUE=TENANT, e.g. --tenant-map legacy-audit-queue=acme"
                    ))
                })?;
                // As the host: a URL or ARN stands for its bare queue name.
                let queue = queue.trim();
                Ok(TenantOverride {
                    queue: crate::queue::queue_name(queue).unwrap_or(queue).to_string(),
                    tenant: tenant.trim().to_string(),
                })
            })
            .collect::<Result<Vec<_>, CommandError>>()?;
        Ok(Flags {
            settings: Settings {
                key_template,
                time_source,
                utc_offset_minutes,
                tenant_overrides,
            },
            event: event.filter(|e| e != "-"),
        })
    }
}

/// A flag's value: after `=`, or the next argument.
fn value_of(
    name: &str,
    inline: Option<String>,
    args: &mut impl Iterator<Item = String>,
) -> Result<String, CommandError> {
    inline
        .or_else(|| args.next())
        .ok_or_else(|| CommandError::Usage(format!("{name} needs a value (see --help)")))
}

/// Parses `+09:00`, `-05:30`, `+0900`, `+09`, `Z` or `UTC` into minutes, as
/// the host's `--utc-offset` does.
pub fn parse_utc_offset(text: &str) -> Result<i16, CommandError> {
    let error = || {
        CommandError::Usage(format!(
            "invalid --utc-offset {text:?}: expected ±HH:MM within ±14:00, e.g. +09:00 (JST) or -05:00"
        ))
    };
    let text = text.trim();
    if matches!(text, "Z" | "z" | "UTC" | "utc") {
        return Ok(0);
    }
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(error()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    let colon_ok = match rest.find(':') {
        None => true,
        Some(at) => at == 2 && rest.len() == 5,
    };
    if !colon_ok || !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 2 | 4) {
        return Err(error());
    }
    let hours: i16 = digits[..2].parse().map_err(|_| error())?;
    let minutes: i16 = if digits.len() == 4 {
        digits[2..].parse().map_err(|_| error())?
    } else {
        0
    };
    if minutes >= 60 || hours * 60 + minutes > 14 * 60 {
        return Err(error());
    }
    Ok(sign * (hours * 60 + minutes))
}
