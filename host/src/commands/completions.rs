//! `audit-archiver completions SHELL`: the completion script, generated from
//! the same command-line definition as `--help`.

use clap_complete::Shell;

/// Writes `shell`'s completion script for `command` to stdout.
pub fn completions(shell: Shell, mut command: clap::Command) -> super::Exit {
    let name = command.get_name().to_string();
    clap_complete::generate(shell, &mut command, name, &mut std::io::stdout());
    super::Exit::Success
}
