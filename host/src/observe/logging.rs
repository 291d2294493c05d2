//! Logging on stderr, text or JSON.

use clap::ValueEnum;
use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Sets up logging on stderr. `RUST_LOG` overrides the default level (info),
/// except for the AWS SDK and the HTTP stack, which are always capped at
/// warnings: their debug and trace output prints keys and signed requests.
/// The credential chain (`aws_config`) is capped at errors: each source that
/// has nothing warns with its whole error structure, while the host's own
/// error (start-up, or the failed call) already says what is missing.
pub fn init_logging(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    filter = filter.add_directive("aws_config=error".parse().expect("a static directive"));
    for target in [
        "aws_credential_types",
        "aws_runtime",
        "aws_sdk_s3",
        "aws_sdk_sqs",
        "aws_sdk_sts",
        "aws_sigv4",
        "aws_smithy_http_client",
        "aws_smithy_runtime",
        "aws_smithy_runtime_api",
        "aws_smithy_types",
        // The HTTP stack under the Prisma Cloud client: its trace output
        // would show request details.
        "hyper",
        "hyper_util",
        "hyper_rustls",
        "rustls",
    ] {
        let directive = format!("{target}=warn")
            .parse()
            .expect("a static directive");
        filter = filter.add_directive(directive);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
