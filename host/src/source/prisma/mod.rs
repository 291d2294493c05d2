//! The Prisma Cloud API client: the only module that talks to Prisma Cloud.
//!
//! It follows Palo Alto Networks' documented interface: `POST /login` with the
//! access key id and secret returns a token sent as `x-redlock-auth`; a token
//! lives 10 minutes and is renewed with `GET /auth_token/extend`;
//! `POST /audit/api/v1/log` returns one page of audit records and a
//! `nextPageToken` while more remain. Every request goes through a pacer
//! (the API allows 10 requests/s; [`pace`]); `429` (honouring `Retry-After`),
//! `5xx`, timeouts and connection errors are retried for a bounded number of
//! attempts. Tokens are renewed before they expire ([`token`]). The secret
//! never reaches a log line or an error message: it lives in a [`Secret`], and
//! request bodies are not logged.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::Mutex;

mod credentials;
mod pace;
mod token;

pub use credentials::{Credentials, Secret};

use pace::{retry_wait, Failure, Pacer};
use token::Session;

/// The header that carries the session token.
const AUTH_HEADER: &str = "x-redlock-auth";

/// Longest wait for one request, response body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest response accepted (a page of 500 records is well under 1 MiB).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// How the client paces and retries requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientSettings {
    /// Most requests per second (all requests: login, renewal, pages).
    pub requests_per_sec: f64,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Age at which a token is renewed before its use (tokens live 10 minutes).
    pub token_renew_after: Duration,
    /// Records asked for per page (the API takes 100 to 500).
    pub page_size: u32,
}

impl ClientSettings {
    /// The API's documented pace and limits (`config/defaults.rs` quotes
    /// them): 10 requests a second, 500 records a page, tokens that live 600 s.
    pub const DEFAULT: Self = Self {
        requests_per_sec: 10.0,
        max_attempts: 8,
        token_renew_after: Duration::from_secs(480),
        page_size: 500,
    };
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A failure talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `/login` refused the access key (401/403): fix the credentials.
    #[error("Prisma Cloud at {url} refused the access key (HTTP {status}): check PRISMA_ACCESS_KEY_ID and PRISMA_SECRET_KEY (or --credentials-file), that the key is active, and that --api-url is the tenant's API host")]
    LoginRefused {
        /// The API URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// Every attempt failed with a retryable error.
    #[error("{what} at {url} failed after {attempts} attempt(s): {last}")]
    GaveUp {
        /// The request, e.g. `POST /audit/api/v1/log`.
        what: &'static str,
        /// The API URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// A response that cannot be retried (e.g. 400) or cannot be read.
    #[error("{what} at {url}: {detail}")]
    Rejected {
        /// The request.
        what: &'static str,
        /// The API URL.
        url: String,
        /// What was wrong.
        detail: String,
    },
}

/// Request counters, shared with the caller for its summary.
#[derive(Debug, Default)]
pub struct ApiCounters {
    /// HTTP requests sent (attempts, retries included).
    pub requests: AtomicU64,
    /// Responses `429 Too Many Requests`.
    pub throttled: AtomicU64,
    /// Attempts repeated after a retryable failure.
    pub retries: AtomicU64,
}

/// One page of audit records.
#[derive(Debug)]
pub struct Page {
    /// Each record exactly as the API returned it.
    pub records: Vec<String>,
    /// The token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct PageBody<'a> {
    #[serde(borrow, default)]
    value: Vec<&'a RawValue>,
    #[serde(rename = "nextPageToken", default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

/// The token a request carries.
#[derive(Clone, Copy)]
enum Auth<'a> {
    /// None (`/login`).
    None,
    /// This one (`/auth_token/extend`).
    Token(&'a Secret),
    /// The session's, fresh for each attempt: a retry may wait long enough
    /// for the token it first carried to fall due.
    Session,
}

/// A response, and what it took.
struct Answer {
    status: StatusCode,
    bytes: Bytes,
    /// When the attempt that got it was sent.
    sent: Instant,
    /// The token it carried.
    token: Option<Secret>,
}

/// What one attempt came to.
enum Attempt {
    Done(StatusCode, Bytes),
    Retry(Failure, String, Option<Duration>),
}

/// A logged-in client of one Prisma Cloud tenant's API.
pub struct PrismaClient {
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    credentials: Credentials,
    settings: ClientSettings,
    pacer: Pacer,
    session: Mutex<Option<Session>>,
    counters: Arc<ApiCounters>,
}

impl fmt::Debug for PrismaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrismaClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl PrismaClient {
    /// A client of the API at `api_url` (e.g. `https://api.prismacloud.io`).
    pub fn new(
        api_url: &str,
        credentials: Credentials,
        settings: ClientSettings,
        counters: Arc<ApiCounters>,
    ) -> Result<Self, std::io::Error> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)?
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Self {
            http,
            base: api_url.trim_end_matches('/').to_string(),
            credentials,
            settings,
            pacer: Pacer::new(settings.requests_per_sec),
            session: Mutex::new(None),
            counters,
        })
    }

    /// The API URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Logs in (or checks the session is still good); a refused key is
    /// [`ApiError::LoginRefused`].
    pub async fn login(&self) -> Result<(), ApiError> {
        let mut session = self.session.lock().await;
        *session = Some(self.new_session().await?);
        Ok(())
    }

    async fn new_session(&self) -> Result<Session, ApiError> {
        // Built by hand-off to serde_json so that quoting is right; the body is
        // never logged.
        let body = serde_json::json!({
            "username": self.credentials.access_key_id.expose(),
            "password": self.credentials.secret_key.expose(),
        })
        .to_string();
        let Answer {
            status,
            bytes,
            sent: asked,
            ..
        } = self
            .send(
                "POST /login",
                Method::POST,
                "/login",
                Auth::None,
                Some(body),
            )
            .await?;
        match status.as_u16() {
            200..=299 => {}
            401 | 403 => {
                return Err(ApiError::LoginRefused {
                    url: self.base.clone(),
                    status: status.as_u16(),
                })
            }
            other => return Err(self.rejected("POST /login", format!("HTTP {other}"))),
        }
        let token: TokenBody = serde_json::from_slice(&bytes)
            .map_err(|e| self.rejected("POST /login", format!("the response has no token: {e}")))?;
        tracing::debug!(api = %self.base, "logged in to Prisma Cloud");
        Ok(Session::new(
            token.token,
            asked,
            self.settings.token_renew_after,
        ))
    }

    /// Renews `current` with `/auth_token/extend`; logs in again when the
    /// API refuses to extend it (it expired).
    async fn renew(&self, current: &Session) -> Result<Session, ApiError> {
        let Answer {
            status,
            bytes,
            sent: asked,
            ..
        } = self
            .send(
                "GET /auth_token/extend",
                Method::GET,
                "/auth_token/extend",
                Auth::Token(&current.token),
                None,
            )
            .await?;
        if status.is_success() {
            if let Ok(token) = serde_json::from_slice::<TokenBody>(&bytes) {
                tracing::debug!(api = %self.base, "renewed the Prisma Cloud token");
                return Ok(Session::new(
                    token.token,
                    asked,
                    self.settings.token_renew_after,
                ));
            }
        }
        tracing::debug!(api = %self.base, status = status.as_u16(), "token not renewed; logging in again");
        self.new_session().await
    }

    /// A token young enough to use: still short of its renewal age when
    /// the request carrying it can start (the pacer may make it wait).
    async fn token(&self) -> Result<Secret, ApiError> {
        let mut session = self.session.lock().await;
        let start = self.pacer.next_start();
        let fresh = match session.take() {
            Some(s) if !s.due_by(start) => s,
            Some(s) if s.alive_at(start) => self.renew(&s).await?,
            _ => self.new_session().await?,
        };
        let token = fresh.token.clone();
        *session = Some(fresh);
        Ok(token)
    }

    /// After a 401: logs in again unless another request did already. (An
    /// API that refused the token would refuse to extend it too: asking
    /// would only cost a request.)
    async fn refresh_after_401(&self, rejected: &Secret) -> Result<(), ApiError> {
        let mut session = self.session.lock().await;
        let fresh = match session.take() {
            Some(s) if s.token != *rejected => s,
            _ => self.new_session().await?,
        };
        *session = Some(fresh);
        Ok(())
    }

    /// One page of the audit records with `timestamp` in
    /// `[start_ms, end_ms]` (both inclusive, as the API takes them).
    pub async fn audit_page(
        &self,
        start_ms: i64,
        end_ms: i64,
        page_token: Option<&str>,
    ) -> Result<Page, ApiError> {
        const WHAT: &str = "POST /audit/api/v1/log";
        let mut request = serde_json::json!({
            "timeRange": {"type": "absolute", "value": {"startTime": start_ms, "endTime": end_ms}},
            "limit": self.settings.page_size,
        });
        if let Some(page_token) = page_token {
            request["nextPageToken"] = page_token.into();
        }
        let body = request.to_string();
        // A 401 means the token expired or was revoked after our check: log
        // in again and ask again, a few times at most.
        for _ in 0..4 {
            let Answer {
                status,
                bytes,
                token,
                ..
            } = self
                .send(
                    WHAT,
                    Method::POST,
                    "/audit/api/v1/log",
                    Auth::Session,
                    Some(body.clone()),
                )
                .await?;
            if status == StatusCode::UNAUTHORIZED {
                tracing::debug!(api = %self.base, "token refused (401); logging in again");
                if let Some(token) = token {
                    self.refresh_after_401(&token).await?;
                }
                continue;
            }
            if !status.is_success() {
                return Err(self.rejected(WHAT, format!("HTTP {}", status.as_u16())));
            }
            let page: PageBody<'_> = serde_json::from_slice(&bytes)
                .map_err(|e| self.rejected(WHAT, format!("unreadable page: {e}")))?;
            return Ok(Page {
                records: page.value.iter().map(|r| r.get().to_string()).collect(),
                next_page_token: page.next_page_token.filter(|t| !t.is_empty()),
            });
        }
        Err(self.rejected(
            WHAT,
            "the API kept refusing fresh tokens (HTTP 401)".to_string(),
        ))
    }

    fn rejected(&self, what: &'static str, detail: String) -> ApiError {
        ApiError::Rejected {
            what,
            url: self.base.clone(),
            detail,
        }
    }

    /// Sends one request, paced, retrying 429, 5xx, timeouts and connection
    /// errors (see [`retry_wait`]). Returns any other status with its body,
    /// and when the attempt that got it was sent (a token's age counts from
    /// there, not from a wait for the pacer).
    async fn send(
        &self,
        what: &'static str,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<String>,
    ) -> Result<Answer, ApiError> {
        let mut attempt = 1;
        loop {
            let token = match auth {
                Auth::None => None,
                Auth::Token(token) => Some(token.clone()),
                // Boxed: renewing the token sends a request of its own.
                Auth::Session => Some(Box::pin(self.token()).await?),
            };
            self.pacer.acquire().await;
            let sent = Instant::now();
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = self
                .attempt(method.clone(), path, token.as_ref(), body.clone())
                .await;
            let (failure, reason, retry_after) = match outcome {
                Attempt::Done(status, bytes) => {
                    return Ok(Answer {
                        status,
                        bytes,
                        sent,
                        token,
                    })
                }
                Attempt::Retry(failure, reason, retry_after) => (failure, reason, retry_after),
            };
            if attempt >= self.settings.max_attempts {
                return Err(ApiError::GaveUp {
                    what,
                    url: self.base.clone(),
                    attempts: attempt,
                    last: reason,
                });
            }
            let wait = retry_wait(failure, retry_after, attempt, self.pacer.interval());
            tracing::warn!(api = %self.base, request = what, %reason, attempt, retry_in_ms = wait.as_millis() as u64, "Prisma Cloud request failed; retrying");
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        method: Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<String>,
    ) -> Attempt {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("accept", "application/json");
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        if let Some(token) = token {
            match HeaderValue::from_str(token.expose()) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    request = request.header(AUTH_HEADER, value);
                }
                Err(_) => {
                    return Attempt::Retry(
                        Failure::Unavailable,
                        "the API returned an unusable token".into(),
                        None,
                    )
                }
            }
        }
        let request = match request.body(Full::new(Bytes::from(body.unwrap_or_default()))) {
            Ok(request) => request,
            Err(e) => {
                return Attempt::Retry(Failure::Unavailable, format!("invalid request: {e}"), None)
            }
        };
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                // The error's source chain says why (refused, reset, DNS).
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    text.push_str(": ");
                    text.push_str(&cause.to_string());
                    source = cause.source();
                }
                text
            })?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let limited = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES);
            let bytes = limited
                .collect()
                .await
                .map_err(|e| format!("reading the response: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, retry_after, bytes))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Err(_) => Attempt::Retry(
                Failure::Unavailable,
                format!("no response within {REQUEST_TIMEOUT:?}"),
                None,
            ),
            Ok(Err(reason)) => Attempt::Retry(Failure::Unavailable, reason, None),
            Ok(Ok((status, retry_after, _))) if status == StatusCode::TOO_MANY_REQUESTS => {
                self.counters.throttled.fetch_add(1, Ordering::Relaxed);
                Attempt::Retry(
                    Failure::Throttled,
                    "HTTP 429 (rate limited)".into(),
                    retry_after,
                )
            }
            Ok(Ok((status, retry_after, _))) if status.is_server_error() => Attempt::Retry(
                Failure::Unavailable,
                format!("HTTP {}", status.as_u16()),
                retry_after,
            ),
            Ok(Ok((status, _, bytes))) => Attempt::Done(status, bytes),
        }
    }
}
