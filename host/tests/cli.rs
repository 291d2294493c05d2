//! What the binary says about itself: `--version` names the routing contract
//! and the exact component embedded; `completions` prints scripts the shells
//! accept, covering every subcommand.

use std::process::{Command, Output};

use audit_archiver::config::Cli;
use clap::CommandFactory;
use sha2::{Digest, Sha256};

fn audit_archiver(args: &[&str]) -> Output {
    audit_archiver_test_kit::run_offline(args)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn version_names_the_contract_and_the_embedded_component() {
    let output = audit_archiver(&["--version"]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    let digest: String = Sha256::digest(audit_archiver::route::EMBEDDED_COMPONENT)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            format!("audit-archiver {}", env!("CARGO_PKG_VERSION")).as_str(),
            "routing contract: audit-archiver:routing/router@1.1.0 (also accepts audit-archiver:routing/router@1.0.0)",
            format!(
                "embedded component: sha256:{digest} ({} bytes)",
                audit_archiver::route::EMBEDDED_COMPONENT.len()
            )
            .as_str(),
        ],
        "{text}"
    );
    // `-V` stays the one-line version scripts parse.
    let short = stdout(&audit_archiver(&["-V"]));
    assert_eq!(
        short.trim(),
        format!("audit-archiver {}", env!("CARGO_PKG_VERSION"))
    );
}

/// The subcommands a user can type (clap's `help` aside).
fn subcommands() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect()
}

#[test]
fn completions_cover_every_subcommand_in_each_shell() {
    let names = subcommands();
    assert!(names.len() >= 8, "{names:?}");
    for shell in ["bash", "zsh", "fish"] {
        let output = audit_archiver(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {output:?}");
        let script = stdout(&output);
        for name in &names {
            assert!(script.contains(name.as_str()), "{shell}: no {name}");
        }
        for flag in ["queue-prefix", "digest-kms-key-id", "key-template"] {
            assert!(script.contains(flag), "{shell}: no --{flag}");
        }
    }
    assert!(stdout(&audit_archiver(&["completions", "zsh"])).starts_with("#compdef audit-archiver"));
    assert!(
        stdout(&audit_archiver(&["completions", "fish"])).contains("complete -c audit-archiver")
    );
}

/// bash loads the script and registers it; completing `audit-archiver r`
/// offers the subcommands that start with r.
#[test]
fn bash_completes_subcommands() {
    let script = stdout(&audit_archiver(&["completions", "bash"]));
    let dir =
        std::env::temp_dir().join(format!("audit-archiver-completions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit-archiver.bash");
    std::fs::write(&path, script).unwrap();
    // The function the script registers, called as bash would on TAB.
    let probe = format!(
        "source {}; set -- $(complete -p audit-archiver); while [ \"$1\" != -F ]; do shift; done; \
         COMP_WORDS=(audit-archiver r); COMP_CWORD=1; COMP_LINE='audit-archiver r'; \
         COMP_POINT=${{#COMP_LINE}}; \"$2\" audit-archiver r audit-archiver; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display()
    );
    let output = Command::new("bash")
        .args(["--norc", "-c", &probe])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(output.status.success(), "{output:?}");
    let offered: Vec<String> = stdout(&output).lines().map(str::to_string).collect();
    let expected: Vec<String> = subcommands()
        .into_iter()
        .filter(|name| name.starts_with('r'))
        .collect();
    assert_eq!(offered, expected, "{output:?}");
}

#[test]
fn an_unknown_shell_is_exit_2_naming_the_choices() {
    let output = audit_archiver(&["completions", "tcsh"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let text = String::from_utf8_lossy(&output.stderr);
    for shell in ["bash", "zsh", "fish"] {
        assert!(text.contains(shell), "{text}");
    }
}
