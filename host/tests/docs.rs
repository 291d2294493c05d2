//! The reference in `docs/` kept true to the code.
//!
//! - Every subcommand of `audit-archiver` (hidden ones and `help` aside) has a
//!   page, `docs/commands/<name>.md`, and the page's usage line and option
//!   table, between `<!-- options: <name> -->` and `<!-- /options -->`, are
//!   exactly what clap's definition gives (`audit_archiver::config::Cli`): flag
//!   and value name, environment variable, default, the help text, the
//!   possible values. A stale table fails with the difference and the fix;
//!   `UPDATE_DOCS=1 cargo test --release -p audit-archiver --test docs`
//!   rewrites the tables (and starts a page for a new subcommand).
//! - The docs index (`docs/README.md`) and the front page (`README.md`) link
//!   every command page, so a new subcommand shows up where people look.
//! - Every relative link in `README.md`, `RELIABILITY.md`, `BENCHMARKS.md` and
//!   `docs/` resolves: the file exists and, for `#anchor`, so does the heading.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use audit_archiver::config::Cli;
use clap::{ArgAction, CommandFactory};

/// The command that rewrites the generated tables.
const FIX: &str = "UPDATE_DOCS=1 cargo test --release -p audit-archiver --test docs";
/// Where each subcommand's page is, from the repository root.
const COMMANDS_DIR: &str = "docs/commands";
/// The end of a generated block.
const END: &str = "<!-- /options -->";

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Writes a page whole (a temporary file renamed over it), so that the link
/// check running beside the update never reads half a page.
fn write_page(path: &Path, text: &str) {
    let temporary = path.with_extension("md.new");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn updating() -> bool {
    std::env::var_os("UPDATE_DOCS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The start of the generated block of `name`.
fn begin(name: &str) -> String {
    format!("<!-- options: {name} -->")
}

/// The documented subcommands: every one but `help` and the hidden ones,
/// built (so their usage names the binary).
fn subcommands() -> Vec<clap::Command> {
    let mut cli = Cli::command();
    cli.build();
    cli.get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------
// Rendering

/// Markdown for one table cell: one line, `|` escaped everywhere (GitHub
/// needs it inside code spans too); outside code spans, what markdown would
/// read as HTML or emphasis is escaped.
fn cell(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        if i % 2 == 1 {
            out.push_str(&part.replace('|', "\\|"));
            continue;
        }
        let mut previous = ' ';
        for c in part.chars() {
            match c {
                '|' => out.push_str("\\|"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '*' => out.push_str("\\*"),
                '~' => out.push_str("\\~"),
                '_' if !previous.is_alphanumeric() => out.push_str("\\_"),
                c => out.push(c),
            }
            previous = c;
        }
    }
    out
}

/// `text` as a code span cell.
fn code(text: &str) -> String {
    cell(&format!("`{text}`"))
}

/// An argument's help text (the long one when it has one), on one line,
/// and the default its `[default: …]` suffix names, split off.
fn help_and_default(arg: &clap::Arg) -> (String, Option<String>) {
    let help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(start) = help.rfind("[default: ").filter(|_| help.ends_with(']')) {
        let default = help[start + "[default: ".len()..help.len() - 1].to_string();
        let text = help[..start].trim_end().to_string();
        return (text, Some(default));
    }
    (help, None)
}

/// Whether the argument takes a value (not a switch).
fn takes_value(arg: &clap::Arg) -> bool {
    arg.get_action().takes_values()
}

/// The option column: `--flag VALUE` (or the positional's name), with the
/// short flag and "repeatable" when they apply.
fn option_cell(arg: &clap::Arg) -> String {
    let value = arg
        .get_value_names()
        .map(|names| {
            names
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
    let mut flag = match (arg.get_short(), arg.get_long()) {
        (Some(s), Some(l)) => format!("-{s}, --{l}"),
        (None, Some(l)) => format!("--{l}"),
        (Some(s), None) => format!("-{s}"),
        (None, None) => String::new(),
    };
    if flag.is_empty() {
        flag = value;
    } else if takes_value(arg) {
        flag = format!("{flag} {value}");
    }
    let mut out = code(&flag);
    if matches!(arg.get_action(), ArgAction::Append) {
        out.push_str(", repeatable");
    }
    out
}

/// The environment column: the variable, and how a list is written in it.
fn env_cell(arg: &clap::Arg) -> String {
    let Some(env) = arg.get_env() else {
        return String::new();
    };
    let mut out = code(&env.to_string_lossy());
    if let Some(delimiter) = arg.get_value_delimiter() {
        let _ = write!(out, " ({}-separated)", delimiter_name(delimiter));
    }
    out
}

fn delimiter_name(delimiter: char) -> String {
    match delimiter {
        ',' => "comma".to_string(),
        ';' => "semicolon".to_string(),
        c => format!("`{c}`"),
    }
}

/// The default column: clap's own default, else the help text's
/// `[default: …]`; a single word as code, a phrase as text.
fn default_cell(arg: &clap::Arg, from_help: Option<&str>) -> String {
    if arg.is_required_set() {
        return "required".to_string();
    }
    if takes_value(arg) {
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| code(&v.to_string_lossy()))
            .collect();
        if !defaults.is_empty() {
            return defaults.join(", ");
        }
    }
    match from_help {
        Some(d) if !d.contains(char::is_whitespace) => code(d),
        Some(d) => cell(d),
        None => String::new(),
    }
}

/// The meaning column: the help text, then the possible values with theirs.
fn meaning_cell(arg: &clap::Arg, help: &str) -> String {
    let mut out = cell(help);
    if !takes_value(arg) {
        return out;
    }
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| match v.get_help() {
            Some(h) => format!("{}: {}", code(v.get_name()), cell(&h.to_string())),
            None => code(v.get_name()),
        })
        .collect();
    if !values.is_empty() {
        if !out.is_empty() && !out.ends_with('.') {
            out.push('.');
        }
        let _ = write!(out, " Values: {}.", values.join("; "));
    }
    out.trim().to_string()
}

/// The generated block of one subcommand, markers included.
fn render(command: &clap::Command) -> String {
    let name = command.get_name();
    let usage = command.clone().render_usage().to_string();
    let usage = usage.trim();
    let mut out = String::new();
    let _ = writeln!(out, "{}", begin(name));
    let _ = writeln!(
        out,
        "<!-- Generated from the help texts in host/src/config/ by host/tests/docs.rs; \
         after changing them run: {FIX} -->"
    );
    out.push('\n');
    let _ = writeln!(out, "```text\n{usage}\n```");
    out.push('\n');
    out.push_str("| option | environment | default | meaning |\n");
    out.push_str("| --- | --- | --- | --- |\n");
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if arg.is_hide_set() || id == "help" || id == "version" {
            continue;
        }
        let (help, default) = help_and_default(arg);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            option_cell(arg),
            env_cell(arg),
            default_cell(arg, default.as_deref()),
            meaning_cell(arg, &help),
        );
    }
    out.push_str(END);
    out
}

// ---------------------------------------------------------------------------
// Checking

/// The generated block in a page: its byte range, markers included.
fn block_range(page: &str, name: &str) -> Option<std::ops::Range<usize>> {
    let start = page.find(&begin(name))?;
    let end = page[start..].find(END)? + start + END.len();
    Some(start..end)
}

/// A line diff (`-` in the page, `+` from clap), by longest common subsequence.
fn diff(found: &str, expected: &str) -> String {
    let a: Vec<&str> = found.lines().collect();
    let b: Vec<&str> = expected.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            let _ = writeln!(out, "    - {}", a[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "    + {}", b[j]);
            j += 1;
        }
    }
    out
}

/// A new page for a subcommand that has none.
fn new_page(command: &clap::Command) -> String {
    let about = command
        .get_about()
        .map(|a| a.to_string())
        .unwrap_or_default();
    format!(
        "# `audit-archiver {}`\n\n{about}.\n\n## Options\n\n{}\n",
        command.get_name(),
        render(command)
    )
}

#[test]
fn every_command_page_has_the_options_clap_gives() {
    let root = repo_root();
    let update = updating();
    let mut problems = Vec::new();
    for command in subcommands() {
        let name = command.get_name();
        let relative = format!("{COMMANDS_DIR}/{name}.md");
        let path = root.join(&relative);
        let expected = render(&command);
        let Ok(page) = std::fs::read_to_string(&path) else {
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                write_page(&path, &new_page(&command));
                eprintln!("started {relative}: write what `{name}` does around its table");
            } else {
                problems.push(format!(
                    "`audit-archiver {name}` has no page: {relative} is missing"
                ));
            }
            continue;
        };
        let rewritten = match block_range(&page, name) {
            Some(range) if page[range.clone()] == expected => continue,
            Some(range) => {
                problems.push(format!(
                    "{relative}: the options of `{name}` differ from clap's \
                     (- the page, + the code):\n{}",
                    diff(&page[range.clone()], &expected)
                ));
                format!("{}{expected}{}", &page[..range.start], &page[range.end..])
            }
            None => {
                problems.push(format!(
                    "{relative} has no `{}` … `{END}` block",
                    begin(name)
                ));
                format!("{}\n## Options\n\n{expected}\n", page.trim_end())
            }
        };
        if update {
            write_page(&path, &rewritten);
            eprintln!("rewrote the options of {relative}");
        }
    }
    if update {
        return;
    }
    assert!(
        problems.is_empty(),
        "{}\n\nThe tables are generated from the help texts (host/src/config/). \
         To update them, run:\n    {FIX}\n",
        problems.join("\n\n")
    );
}

/// A page for a command that no longer exists would document what is not
/// there. A page whose block is still empty (`<!-- options: NAME -->` right
/// before `<!-- /options -->`) waits for a command being added: its table is
/// generated once the command exists.
#[test]
fn every_command_page_is_of_a_command() {
    let names: BTreeSet<String> = subcommands()
        .iter()
        .map(|c| c.get_name().to_string())
        .collect();
    let dir = repo_root().join(COMMANDS_DIR);
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            if names.contains(&stem) {
                continue;
            }
            let page = read(&path);
            let waiting = block_range(&page, &stem)
                .is_some_and(|range| page[range].trim_start_matches(&begin(&stem)).trim() == END);
            if waiting {
                eprintln!("{COMMANDS_DIR}/{stem}.md waits for `audit-archiver {stem}`");
            } else {
                orphans.push(format!("{COMMANDS_DIR}/{stem}.md"));
            }
        }
    }
    assert!(
        orphans.is_empty(),
        "pages of commands `audit-archiver` does not have: {orphans:?} \
         (remove them, or empty their options block while the command is being added)"
    );
}

/// The index and the front page link every command page.
#[test]
fn the_index_and_the_readme_link_every_command() {
    let root = repo_root();
    let index = read(&root.join("docs/README.md"));
    let readme = read(&root.join("README.md"));
    let mut missing = Vec::new();
    for command in subcommands() {
        let name = command.get_name();
        if !index.contains(&format!("(commands/{name}.md")) {
            missing.push(format!("docs/README.md does not link commands/{name}.md"));
        }
        if !readme.contains(&format!("(docs/commands/{name}.md")) {
            missing.push(format!("README.md does not link docs/commands/{name}.md"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

// ---------------------------------------------------------------------------
// Links

/// The markdown files whose links are checked.
fn documents(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut out: Vec<PathBuf> = ["README.md", "RELIABILITY.md", "BENCHMARKS.md"]
        .iter()
        .map(|f| root.join(f))
        .collect();
    walk(&root.join("docs"), &mut out);
    out.sort();
    out
}

/// A document's lines outside fenced code blocks, with their numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((index + 1, line));
        }
    }
    out
}

/// The targets of the inline links `[text](target)` of a line, code spans
/// left out.
fn link_targets(line: &str) -> Vec<String> {
    let line: String = line
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, part)| part)
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = Vec::new();
    let mut rest = line.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].split_whitespace().next().unwrap_or("");
        out.push(target.to_string());
        rest = &after[end..];
    }
    out
}

/// GitHub's anchor of a heading: lowercase, punctuation dropped (but `-` and
/// `_`), spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a document's headings (a repeated heading gets `-1`, `-2`…).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            let base = slug(&line[hashes..]);
            let mut anchor = base.clone();
            let mut n = 0;
            while out.contains(&anchor) {
                n += 1;
                anchor = format!("{base}-{n}");
            }
            out.insert(anchor);
        }
    }
    out
}

#[test]
fn every_relative_link_resolves() {
    let root = repo_root();
    let mut broken = Vec::new();
    for document in documents(&root) {
        let text = read(&document);
        let shown = document.strip_prefix(&root).unwrap().display().to_string();
        for (number, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (file, anchor) = match target.split_once('#') {
                    Some((file, anchor)) => (file, Some(anchor)),
                    None => (target.as_str(), None),
                };
                let path = if file.is_empty() {
                    document.clone()
                } else {
                    document.parent().unwrap().join(file)
                };
                if !path.exists() {
                    broken.push(format!("{shown}:{number}: ({target}): no such file"));
                    continue;
                }
                if let Some(anchor) = anchor {
                    if path.extension().is_some_and(|e| e == "md")
                        && !anchors(&read(&path)).contains(anchor)
                    {
                        broken.push(format!("{shown}:{number}: ({target}): no such heading"));
                    }
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "broken links:\n  {}",
        broken.join("\n  ")
    );
}

#[test]
fn links_anchors_and_cells_are_read_as_github_does() {
    assert_eq!(
        link_targets("see [`run`](docs/commands/run.md#options) and `[not](a-link)` or [x](y.md)"),
        ["docs/commands/run.md#options", "y.md"]
    );
    assert_eq!(slug(" `audit-archiver verify`"), "audit-archiver-verify");
    assert_eq!(
        slug(" 2. Connect Prisma Cloud (once per tenant)"),
        "2-connect-prisma-cloud-once-per-tenant"
    );
    let text = "# A\n```sh\n# not a heading\n```\n## A\n";
    assert_eq!(anchors(text).into_iter().collect::<Vec<_>>(), ["a", "a-1"]);
    assert_eq!(
        cell("a | b `c|d` <e> _f_ x_y *g* ~h"),
        "a \\| b `c\\|d` &lt;e&gt; \\_f_ x_y \\*g\\* \\~h"
    );
}
