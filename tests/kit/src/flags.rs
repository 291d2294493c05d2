//! The refused command lines, in one table: what each end-to-end suite runs
//! to check that a bad flag stops start-up with exit 2 and a one-line error
//! naming the flag (and reads or writes nothing). `{bucket}` and `{queue}`
//! are replaced by the suite's own; the read commands' rows expect an
//! archive holding tenant `acme` on 2025-06-27 and no tenant `globex`.

use std::process::Output;

use crate::process::{exit_code, stderr};

/// A command line refused at start-up, and the flag its error names.
pub struct Refusal {
    /// The arguments, from the subcommand on.
    pub args: &'static [&'static str],
    /// What the error must name.
    pub names: &'static str,
}

const fn refusal(args: &'static [&'static str], names: &'static str) -> Refusal {
    Refusal { args, names }
}

/// Every refused command line the suites run.
#[rustfmt::skip]
pub const REFUSALS: &[Refusal] = &[
    // `run` (host/tests/e2e/startup.rs).
    refusal(&["run", "--drain", "--bucket", "{bucket}", "--queue", "{queue}", "--key-template", "{tenant}/{nope}.json"], "--key-template"),
    refusal(&["run", "--drain", "--bucket", "{bucket}", "--queue", "{queue}", "--key-template", "{tenant}/%Q.json"], "--key-template"),
    refusal(&["run", "--drain", "--bucket", "{bucket}", "--queue", "{queue}", "--key-template", "../{tenant}/x.json"], "--key-template"),
    refusal(&["run", "--drain", "--bucket", "{bucket}", "--queue", "{queue}", "--time-source", "yesterday"], "--time-source"),
    refusal(&["run", "--drain", "--bucket", "{bucket}", "--queue", "{queue}", "--utc-offset", "+99:00"], "--utc-offset"),
    refusal(&["run", "--drain", "--bucket", "{bucket}", "--queue", "{queue}", "--tenant-map", "q=bad/tenant"], "--tenant-map"),
    refusal(&["run", "--drain", "--bucket", "{bucket}", "--queue", "{queue}", "--component", "/nonexistent/router.wasm"], "--component"),
    refusal(&["run", "--drain", "--bucket", "{bucket}", "--queue", "{queue}", "--concurrency", "0"], "--concurrency"),
    refusal(&["run", "--drain", "--queue", "{queue}"], "S3_BUCKET_NAME"),
    // `verify` and `query` (host/tests/readback/bad_input.rs).
    refusal(&["verify", "--bucket", "{bucket}", "--from", "2025-13-01"], "--from"),
    refusal(&["verify", "--bucket", "{bucket}", "--to", "June 27"], "--to"),
    refusal(&["verify", "--bucket", "{bucket}", "--from", "2025-06-28", "--to", "2025-06-27"], "--from"),
    refusal(&["verify", "--bucket", "{bucket}", "--tenant", "globex"], "--tenant"),
    refusal(&["verify", "--bucket", "no-such-archive-bucket"], "--bucket"),
    refusal(&["verify"], "--bucket"),
    refusal(&["query", "--bucket", "{bucket}", "--tenant", "acme", "--from", "2025-02-30", "--to", "2025-06-27"], "--from"),
    refusal(&["query", "--bucket", "{bucket}", "--tenant", "acme", "--from", "2025-06-28", "--to", "2025-06-27T23:59:59+09:00"], "--from"),
    refusal(&["query", "--bucket", "{bucket}", "--tenant", "globex", "--from", "2025-06-27", "--to", "2025-06-27"], "--tenant"),
    refusal(&["query", "--bucket", "no-such-archive-bucket", "--tenant", "acme", "--from", "2025-06-27", "--to", "2025-06-27"], "--bucket"),
];

/// The rows for `commands`, with `{bucket}` and `{queue}` filled in.
pub fn refusals(commands: &[&str], bucket: &str, queue: &str) -> Vec<(Vec<String>, &'static str)> {
    let rows: Vec<_> = REFUSALS
        .iter()
        .filter(|r| commands.contains(&r.args[0]))
        .map(|r| {
            let args = r
                .args
                .iter()
                .map(|a| a.replace("{bucket}", bucket).replace("{queue}", queue))
                .collect();
            (args, r.names)
        })
        .collect();
    assert!(!rows.is_empty(), "no refusal rows for {commands:?}");
    rows
}

/// Asserts that `output` is a refusal naming `names`: exit 2, the name on
/// stderr, nothing on stdout.
pub fn assert_refused(args: &[String], names: &str, output: &Output) {
    let err = stderr(output);
    assert_eq!(exit_code(output), 2, "{args:?}: {err}");
    assert!(err.contains(names), "{args:?} should name {names}: {err}");
    assert!(output.stdout.is_empty(), "{args:?} printed on stdout");
}
