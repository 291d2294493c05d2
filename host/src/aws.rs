//! The one place that builds AWS clients: region, credentials (the SDK's
//! standard chain), endpoint override, retries and timeouts.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::config::StalledStreamProtectionConfig;

/// Where and how to reach AWS (or a compatible endpoint).
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// `--endpoint-url`: a custom S3/SQS endpoint (e.g. a local emulator).
    pub endpoint_url: Option<String>,
    /// `--region`; otherwise the SDK's chain (AWS_REGION, profile).
    pub region: Option<String>,
    /// Attempts per request, the first included, for the SDK's own retries.
    pub max_attempts: u32,
}

/// The clients the host uses.
#[derive(Debug, Clone)]
pub struct Clients {
    /// S3, path-style when an endpoint is overridden.
    pub s3: aws_sdk_s3::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// KMS: signs digests (`--digest-kms-key-id`) and gives `verify` the
    /// public key. Building it makes no request.
    pub kms: aws_sdk_kms::Client,
}

/// Why the clients cannot be built: found at start-up, before any request.
#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    /// The region could not be determined.
    #[error(
        "no AWS region: pass --region REGION (e.g. --region ap-northeast-1) or set AWS_REGION"
    )]
    NoRegion,
    /// No source in the SDK's chain has credentials: usually a new user's
    /// first run, so the fix is the message.
    #[error(
        "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
         AWS_PROFILE to a profile in ~/.aws/config (after `aws sso login` for IAM Identity \
         Center), or run with an IAM role (EC2 instance profile, ECS task role, EKS web \
         identity); the permissions needed are in docs/iam.md{}",
        imds.as_ref().map(|reason| format!(" (the EC2 instance metadata service: {reason})")).unwrap_or_default()
    )]
    NoCredentials {
        /// Why the instance metadata service, the chain's last source, gave
        /// none, when it answered: on EC2, the clue (a container beyond the
        /// hop limit, IMDS turned off).
        imds: Option<String>,
    },
    /// A source was configured but failed (an expired SSO session, a broken
    /// profile, STS refusing a role).
    #[error("cannot load AWS credentials: {0}")]
    Credentials(String),
}

/// How long the credential sources may take at start-up, in all. Generous
/// for a real source (an SSO or STS round trip), short enough that a machine
/// with none gives its answer at once instead of after the SDK's retries.
const CREDENTIALS_DEADLINE: Duration = Duration::from_secs(10);

/// Builds the clients once, at start-up, after resolving credentials once so
/// that a machine without any fails here with the fix, not on the first
/// request with the SDK's chain of causes.
pub async fn clients(settings: &AwsSettings) -> Result<Clients, ClientsError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    let mut shared = loader.load().await;
    if shared.region().is_none() {
        if settings.endpoint_url.is_none() {
            return Err(ClientsError::NoRegion);
        }
        // Local emulators accept any region; spare their users the flag.
        shared = shared
            .into_builder()
            .region(Region::new("us-east-1"))
            .build();
    }
    check_credentials(&shared).await?;
    let retry = RetryConfig::standard()
        .with_max_attempts(settings.max_attempts.max(1))
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(5));
    // A stalled connection must fail and be retried, not hang a worker. SQS
    // attempts must outlast the 20 s long poll.
    let s3_timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(30))
        .build();
    let sqs_timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(45))
        .build();
    let s3 = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(settings.endpoint_url.is_some())
        .retry_config(retry.clone())
        .timeout_config(s3_timeouts.clone())
        .build();
    let kms = aws_sdk_kms::config::Builder::from(&shared)
        .retry_config(retry.clone())
        .timeout_config(s3_timeouts)
        .build();
    // No stalled-stream protection for SQS: a long poll legitimately sends
    // and receives nothing for up to 20 s, and the protection's throughput
    // check re-arms a ~100 ms timer for the whole wait, waking an idle host
    // ~30 times a second (BENCHMARKS.md, section 10). The attempt timeout
    // above still ends a connection that hangs.
    let sqs = aws_sdk_sqs::config::Builder::from(&shared)
        .retry_config(retry)
        .timeout_config(sqs_timeouts)
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .build();
    Ok(Clients {
        s3: aws_sdk_s3::Client::from_conf(s3),
        sqs: aws_sdk_sqs::Client::from_conf(sqs),
        kms: aws_sdk_kms::Client::from_conf(kms),
    })
}

/// Resolves the chain's credentials once (environment, profile, web
/// identity, ECS, EC2 instance metadata, in the SDK's order).
async fn check_credentials(shared: &aws_config::SdkConfig) -> Result<(), ClientsError> {
    use aws_credential_types::provider::error::CredentialsError;
    use aws_credential_types::provider::ProvideCredentials;
    let Some(provider) = shared.credentials_provider() else {
        return Err(ClientsError::NoCredentials { imds: None });
    };
    match tokio::time::timeout(CREDENTIALS_DEADLINE, provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(CredentialsError::CredentialsNotLoaded(_))) => {
            Err(ClientsError::NoCredentials { imds: None })
        }
        // The instance metadata service is the chain's last source: reached
        // and refusing (off EC2 behind a proxy, or IMDS turned off), it means
        // that no source had credentials.
        Ok(Err(error)) if error_chain(&error).contains("IMDS") => {
            Err(ClientsError::NoCredentials {
                imds: Some(error_chain(&error)),
            })
        }
        Ok(Err(error)) => Err(ClientsError::Credentials(error_chain(&error))),
        Err(_) => Err(ClientsError::Credentials(format!(
            "no credential source answered within {} s",
            CREDENTIALS_DEADLINE.as_secs()
        ))),
    }
}

/// An error and its causes on one line.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The HTTP status of a failed call, when a response arrived.
pub(crate) fn http_status<E>(error: &SdkError<E, HttpResponse>) -> Option<u16> {
    error
        .raw_response()
        .map(|response| response.status().as_u16())
}

/// What a failed call says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Throttling, server errors, timeouts, connection failures: retrying may help.
    Transient,
    /// The caller lacks a permission (or its keys are not accepted): retrying
    /// cannot help until an operator changes the policy.
    Denied,
    /// Anything else that retrying the same request cannot fix.
    Permanent,
    /// The queue no longer exists (`AWS.SimpleQueueService.NonExistentQueue`,
    /// `QueueDoesNotExist`): it was deleted, so there is nothing to retry and
    /// nothing for an operator to fix; the host stops polling it.
    Gone,
}

impl FailureKind {
    /// Whether trying again may succeed.
    pub fn is_transient(self) -> bool {
        self == Self::Transient
    }
}

/// Classifies a failed call.
pub(crate) fn classify<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> FailureKind {
    if is_transient(error) {
        FailureKind::Transient
    } else if is_gone(error.code()) {
        FailureKind::Gone
    } else if is_denied(http_status(error), error.code()) {
        FailureKind::Denied
    } else {
        FailureKind::Permanent
    }
}

/// Whether an error code says the queue does not exist (any more).
pub(crate) fn is_gone(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist")
    )
}

/// Whether a status or error code means "not allowed" rather than "bad request".
pub(crate) fn is_denied(status: Option<u16>, code: Option<&str>) -> bool {
    status == Some(403)
        || matches!(
            code,
            Some(
                "AccessDenied"
                    | "AccessDeniedException"
                    | "AuthorizationError"
                    | "InvalidClientTokenId"
                    | "SignatureDoesNotMatch"
                    | "InvalidAccessKeyId"
                    | "ExpiredToken"
                    | "KMS.AccessDeniedException"
                    | "KmsAccessDenied"
                    | "KMS.DisabledException"
            )
        )
}

/// Throttling, server errors, timeouts and connection failures may pass.
pub(crate) fn is_transient<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(_) => {
            let status = http_status(error).unwrap_or(0);
            let code = error.code().unwrap_or("");
            status >= 500
                || matches!(status, 408 | 409 | 429)
                || matches!(
                    code,
                    "SlowDown"
                        | "RequestTimeout"
                        | "Throttling"
                        | "ThrottlingException"
                        | "RequestThrottled"
                        | "ConditionalRequestConflict"
                )
        }
        _ => false,
    }
}

/// One line: the error code and message when the service sent them.
pub(crate) fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: &SdkError<E, HttpResponse>,
) -> String {
    let status = http_status(error)
        .map(|s| format!("HTTP {s} "))
        .unwrap_or_default();
    match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{status}{code}: {message}"),
        (Some(code), None) => format!("{status}{code}"),
        _ => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            format!("{status}{text}")
        }
    }
}
