//! What `verify` prints: the report per tenant and day, as text or JSON,
//! and its progress line on a terminal.

use super::*;

/// An RFC 3339 time with milliseconds at `offset_minutes`.
pub fn rfc3339(ms: i64, offset_minutes: i16) -> String {
    let offset = chrono::FixedOffset::east_opt(i32::from(offset_minutes) * 60)
        .unwrap_or(chrono::FixedOffset::east_opt(0).expect("UTC"));
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&offset)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// A tenant's day in the report.
#[derive(Debug, Serialize)]
pub struct DayReport {
    /// The tenant.
    pub tenant: String,
    /// `YYYY-MM-DD` in the layout's offset.
    pub day: String,
    /// Objects archived that day.
    pub objects: u64,
    /// The earliest archive time.
    pub first: Option<String>,
    /// The latest archive time.
    pub last: Option<String>,
}

/// A day in range with no object (a possible gap; not a finding).
#[derive(Debug, Serialize)]
pub struct EmptyDay {
    /// The tenant.
    pub tenant: String,
    /// `YYYY-MM-DD`.
    pub day: String,
}

/// The whole report (`--format json` prints it as is).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The bucket.
    pub bucket: String,
    /// The layout's offset, `+09:00`.
    pub utc_offset: String,
    /// `--from`, if given.
    pub from: Option<String>,
    /// `--to`, if given.
    pub to: Option<String>,
    /// Whether any object has a version id (the bucket is or was versioned).
    pub versioned: bool,
    /// Whether Object Lock is enabled; `null` when it could not be read.
    pub object_lock: Option<bool>,
    /// The tenants verified.
    pub tenants: Vec<String>,
    /// Objects checked (current objects in the layout, deleted ones aside).
    pub objects: u64,
    /// Per tenant and day with objects.
    pub days: Vec<DayReport>,
    /// Days in range with no object.
    pub empty_days: Vec<EmptyDay>,
    /// Objects per tenant whose day is not known.
    pub undated: BTreeMap<String, u64>,
    /// Quarantined objects.
    pub quarantined: Vec<Quarantined>,
    /// One per key with something wrong, sorted by key.
    pub findings: Vec<Finding>,
    /// The signed digests' proof, when there are digests (or `--digests`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digests: Option<ChainReport>,
}

impl Report {
    pub(super) fn new(
        config: &VerifyConfig,
        tenants: &[String],
        mut tally: Tally,
        quarantined: Vec<Quarantined>,
        object_lock: Option<bool>,
    ) -> Report {
        let offset = config.read.layout.utc_offset_minutes();
        let mut empty_days = Vec::new();
        for tenant in tenants {
            let seen: BTreeSet<Day> = tally
                .days
                .keys()
                .filter(|(t, _)| t == tenant)
                .map(|(_, d)| *d)
                .collect();
            let first = config
                .from_ms
                .map(|ms| Day::of_ms(ms, offset))
                .or(seen.first().copied());
            let last = config
                .to_ms
                .map(|ms| Day::of_ms(ms, offset))
                .or(seen.last().copied());
            if let (Some(first), Some(last)) = (first, last) {
                let mut day = first;
                while day <= last {
                    if !seen.contains(&day) {
                        empty_days.push(EmptyDay {
                            tenant: tenant.clone(),
                            day: day.to_string(),
                        });
                    }
                    day = day.next();
                }
            }
        }
        tally.findings.sort_by(|a, b| a.key.cmp(&b.key));
        Report {
            bucket: config.read.bucket.clone(),
            utc_offset: audit_archiver_transform::time::format_offset(offset),
            from: config.from_ms.map(|ms| rfc3339(ms, offset)),
            to: config.to_ms.map(|ms| rfc3339(ms, offset)),
            versioned: tally.versioned,
            object_lock,
            tenants: tenants.to_vec(),
            objects: tally.objects,
            days: tally
                .days
                .iter()
                .map(|((tenant, day), stats)| DayReport {
                    tenant: tenant.clone(),
                    day: day.to_string(),
                    objects: stats.objects,
                    first: stats.first_ms.map(|ms| rfc3339(ms, offset)),
                    last: stats.last_ms.map(|ms| rfc3339(ms, offset)),
                })
                .collect(),
            empty_days,
            undated: tally.undated,
            quarantined,
            findings: tally.findings,
            digests: None,
        }
    }

    pub(super) fn write_table(&self, out: &mut impl Write) -> std::io::Result<()> {
        let yes_no = |b: Option<bool>| match b {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        };
        writeln!(
            out,
            "s3://{}  from {}  to {}  (UTC{})  versioned: {}  Object Lock: {}",
            self.bucket,
            self.from.as_deref().unwrap_or("the first object"),
            self.to.as_deref().unwrap_or("the last object"),
            self.utc_offset,
            yes_no(Some(self.versioned)),
            yes_no(self.object_lock)
        )?;
        let time_of = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| t.get(11..23))
                .unwrap_or("-")
                .to_string()
        };
        let mut rows: Vec<(&str, &str, String)> = Vec::new();
        for day in &self.days {
            rows.push((
                &day.tenant,
                &day.day,
                format!(
                    "{:>8}  {:<12}  {}",
                    day.objects,
                    time_of(&day.first),
                    time_of(&day.last)
                ),
            ));
        }
        for day in &self.empty_days {
            rows.push((
                &day.tenant,
                &day.day,
                format!("{:>8}  (no object: a gap?)", 0),
            ));
        }
        rows.sort();
        let width = self
            .tenants
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(6)
            .max(6);
        writeln!(out)?;
        writeln!(
            out,
            "{:<width$}  {:<10}  {:>8}  {:<12}  LAST",
            "TENANT", "DAY", "OBJECTS", "FIRST"
        )?;
        for (tenant, day, rest) in rows {
            writeln!(out, "{tenant:<width$}  {day:<10}  {rest}")?;
        }
        for (tenant, n) in &self.undated {
            writeln!(out, "{tenant:<width$}  {:<10}  {n:>8}", "(undated)")?;
        }
        if !self.quarantined.is_empty() {
            writeln!(
                out,
                "\nQUARANTINED ({}): stored aside, not findings",
                self.quarantined.len()
            )?;
            for q in &self.quarantined {
                writeln!(
                    out,
                    "  {}  {}",
                    q.key,
                    q.reason.as_deref().unwrap_or("(no reason recorded)")
                )?;
            }
        }
        if !self.findings.is_empty() {
            writeln!(out, "\nFINDINGS ({})", self.findings.len())?;
            for f in &self.findings {
                let kinds: Vec<&str> = f.kinds.iter().map(|k| k.as_str()).collect();
                writeln!(out, "  {}  {}\n      {}", kinds.join(","), f.key, f.detail)?;
            }
        }
        writeln!(
            out,
            "\n{}: {} object(s) checked, {} finding(s), {} quarantined, {} empty day(s)",
            if self.findings.is_empty() {
                "OK"
            } else {
                "FINDINGS"
            },
            self.objects,
            self.findings.len(),
            self.quarantined.len(),
            self.empty_days.len()
        )?;
        if let Some(digests) = &self.digests {
            writeln!(out, "\nSIGNED DIGESTS ({} chain(s))", digests.chains.len())?;
            for (chain, extent) in &digests.chains {
                writeln!(
                    out,
                    "  {chain}: {} digest(s) from {} to {}",
                    extent.digests,
                    extent.first_start.as_deref().unwrap_or("-"),
                    extent.newest_end.as_deref().unwrap_or("-")
                )?;
            }
            writeln!(
                out,
                "{}/{} digest files valid",
                digests.valid_digest_files, digests.digest_files
            )?;
            writeln!(
                out,
                "{}/{} log files valid",
                digests.valid_log_files, digests.log_files
            )?;
            if digests.unsealed > 0 {
                writeln!(
                    out,
                    "{} object(s) delivered after their chain's newest digest, not sealed yet",
                    digests.unsealed
                )?;
            }
            if !digests.valid() {
                writeln!(
                    out,
                    "DIGEST PROBLEMS: {} (listed on stderr)",
                    digests.problems.len()
                )?;
            }
        }
        Ok(())
    }
}

/// The progress line on stderr, when stderr is a terminal.
pub(super) struct Progress {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub(super) fn start(checker: Arc<Checker>, prefixes: usize) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Progress { stop, task: None };
        }
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let objects = checker.objects_done.load(Ordering::Relaxed);
                let rate = objects as f64 / started.elapsed().as_secs_f64().max(0.001);
                eprint!(
                    "\rverify: {}/{prefixes} prefixes, {objects} objects, {rate:.0} objects/s   ",
                    checker.prefixes_done.load(Ordering::Relaxed)
                );
            }
            eprint!("\r{:78}\r", "");
        });
        Progress {
            stop,
            task: Some(task),
        }
    }

    pub(super) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task {
            task.abort();
            eprint!("\r{:78}\r", "");
        }
    }
}
