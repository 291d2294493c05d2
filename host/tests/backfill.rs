//! `audit-archiver backfill` end to end: the real binary, a real moto server,
//! and a fake Prisma Cloud API served over real HTTP on 127.0.0.1.
//!
//! The fake follows the interface documented by Palo Alto Networks (Prisma
//! Cloud API reference: "Login" `POST /login` → `{"token"}`, the token in the
//! `x-redlock-auth` header, "Extend Session" `GET /auth_token/extend`, "Get
//! Audit Logs" `POST /audit/api/v1/log` with an absolute `timeRange`, `limit`
//! and `nextPageToken`, a rate limit of 10 requests/s answered with 429). It
//! misbehaves on purpose: tokens expire after 3 s and are revoked now and
//! then, some requests get 429 or 500, one connection is reset, page sizes
//! vary, an outage can be switched on mid-run, and records are spaced and
//! escaped in several ways so that a re-encoded body would show. Tokens are
//! opaque strings, or, as the real API issues them, JWTs whose `iat` and
//! `exp` claims say how long they live.

use audit_archiver_test_kit::{self as kit, stderr, summary, Host, Moto};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ACCESS_KEY: &str = "ak-7f3c1e5b-0d2a-4c6e";
const SECRET_KEY: &str = "sk-Zq8vN2xR5tW9yB4mK7pL";
const TENANT: &str = "acme";
/// 2026-01-01T00:00+09:00.
const RANGE_START_MS: i64 = 1_767_193_200_000;
const DAY_MS: i64 = 86_400_000;
/// How long the fake's tokens live (the real API's live 600 s).
const TOKEN_TTL_SECS: u64 = 3;

/// Faults the fake injects, by sequence number of `/audit/api/v1/log` calls.
#[derive(Debug, Clone, Copy)]
struct Faults {
    every_429: u64,
    every_500: u64,
    every_revoke: u64,
    reset_at: Option<u64>,
}

#[derive(Default)]
struct FakeState {
    tokens: HashMap<String, Instant>,
    pages: HashMap<String, (i64, i64, usize)>,
    recent: Vec<Instant>,
    log_calls: u64,
    issued: u64,
    logins: u64,
    refused_logins: u64,
    extends: u64,
    unauthorized: u64,
    /// Of those, tokens revoked by the fault, not expired.
    revoked: u64,
    throttled: u64,
    errors: u64,
    resets: u64,
    served: u64,
    /// Every audit call after this many answers 503 (an outage).
    outage_after: Option<u64>,
    /// Issue JWTs (`iat`, `exp` = `iat` + the lifetime) instead of opaque tokens.
    jwt_tokens: bool,
}

/// A fake Prisma Cloud API (see the module doc for the document it follows).
struct FakePrisma {
    url: String,
    state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakePrisma {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Api {
    /// (timestamp, record exactly as served), sorted by timestamp.
    records: Vec<(i64, String)>,
    token_ttl: Duration,
    rate_limit: usize,
    faults: Faults,
    state: Arc<Mutex<FakeState>>,
}

impl FakePrisma {
    async fn start(records: Vec<(i64, String)>, rate_limit: usize, faults: Faults) -> FakePrisma {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(FakeState::default()));
        let api = Arc::new(Api {
            records,
            token_ttl: Duration::from_secs(TOKEN_TTL_SECS),
            rate_limit,
            faults,
            state: state.clone(),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve_connection(api.clone(), stream));
            }
        });
        FakePrisma { url, state, task }
    }

    fn stats(&self) -> String {
        let s = self.state.lock().unwrap();
        format!(
            "logins {} (refused {}), extends {}, 401s {}, 429s {}, 500s {}, resets {}, pages {}",
            s.logins,
            s.refused_logins,
            s.extends,
            s.unauthorized,
            s.throttled,
            s.errors,
            s.resets,
            s.served
        )
    }
}

/// One parsed request.
struct HttpRequest {
    method: String,
    path: String,
    token: Option<String>,
    body: Vec<u8>,
}

async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<HttpRequest> {
    let header_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let (mut length, mut token) = (0usize, None);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().ok()?,
                "x-redlock-auth" => token = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    while buffer.len() < header_end + length {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[header_end..header_end + length].to_vec();
    buffer.drain(..header_end + length);
    Some(HttpRequest {
        method,
        path,
        token,
        body,
    })
}

enum Reply {
    Respond(u16, Vec<(&'static str, String)>, String),
    Reset,
}

async fn serve_connection(api: Arc<Api>, mut stream: TcpStream) {
    let mut buffer = Vec::new();
    while let Some(request) = read_request(&mut stream, &mut buffer).await {
        match api.handle(&request) {
            Reply::Reset => {
                // SO_LINGER 0: closing sends a TCP RST, a "connection reset".
                // (Deprecated because a non-zero linger blocks on drop; zero does not.)
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                return;
            }
            Reply::Respond(status, headers, body) => {
                let mut response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                    body.len()
                );
                for (name, value) in headers {
                    response.push_str(&format!("{name}: {value}\r\n"));
                }
                response.push_str("\r\n");
                response.push_str(&body);
                if stream.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}

impl Api {
    fn handle(&self, request: &HttpRequest) -> Reply {
        let mut state = self.state.lock().unwrap();
        let now = Instant::now();
        state
            .recent
            .retain(|t| now.duration_since(*t) < Duration::from_secs(1));
        state.recent.push(now);
        if state.recent.len() > self.rate_limit {
            state.throttled += 1;
            return Reply::Respond(429, vec![], r#"{"message":"rate limit exceeded"}"#.into());
        }
        let token_ok = |state: &FakeState| {
            request
                .token
                .as_ref()
                .and_then(|t| state.tokens.get(t))
                .is_some_and(|issued| issued.elapsed() < self.token_ttl)
        };
        match (request.method.as_str(), request.path.as_str()) {
            ("POST", "/login") => {
                let body: serde_json::Value =
                    serde_json::from_slice(&request.body).unwrap_or_default();
                if body["username"] == ACCESS_KEY && body["password"] == SECRET_KEY {
                    state.logins += 1;
                    Reply::Respond(
                        200,
                        vec![],
                        format!(r#"{{"token":"{}"}}"#, new_token(&mut state)),
                    )
                } else {
                    state.refused_logins += 1;
                    Reply::Respond(401, vec![], r#"{"message":"invalid_credentials"}"#.into())
                }
            }
            ("GET", "/auth_token/extend") => {
                if token_ok(&state) {
                    state.extends += 1;
                    Reply::Respond(
                        200,
                        vec![],
                        format!(r#"{{"token":"{}"}}"#, new_token(&mut state)),
                    )
                } else {
                    state.unauthorized += 1;
                    Reply::Respond(401, vec![], String::new())
                }
            }
            ("POST", "/audit/api/v1/log") => {
                state.log_calls += 1;
                let n = state.log_calls;
                let f = self.faults;
                if state.outage_after.is_some_and(|after| n > after) {
                    state.errors += 1;
                    return Reply::Respond(503, vec![], String::new());
                }
                if f.reset_at == Some(n) {
                    state.resets += 1;
                    return Reply::Reset;
                }
                if !token_ok(&state) {
                    state.unauthorized += 1;
                    return Reply::Respond(401, vec![], String::new());
                }
                if n % f.every_revoke == 3 {
                    // The session ended server-side (e.g. an admin revoked it).
                    if let Some(t) = &request.token {
                        state.tokens.remove(t);
                    }
                    state.unauthorized += 1;
                    state.revoked += 1;
                    return Reply::Respond(401, vec![], String::new());
                }
                if n % f.every_429 == 2 {
                    state.throttled += 1;
                    let headers = if n < f.every_429 * 2 {
                        vec![("retry-after", "1".to_string())]
                    } else {
                        vec![]
                    };
                    return Reply::Respond(429, headers, String::new());
                }
                if n % f.every_500 == 4 {
                    state.errors += 1;
                    return Reply::Respond(500, vec![], r#"{"message":"internal"}"#.into());
                }
                let body: serde_json::Value = match serde_json::from_slice(&request.body) {
                    Ok(body) => body,
                    Err(_) => return Reply::Respond(400, vec![], String::new()),
                };
                let limit = body["limit"].as_u64().unwrap_or(100) as usize;
                if !(1..=500).contains(&limit) || body["timeRange"]["type"] != "absolute" {
                    return Reply::Respond(400, vec![], r#"{"message":"bad request"}"#.into());
                }
                let (start, end, offset) = match body["nextPageToken"].as_str() {
                    Some(token) => match state.pages.remove(token) {
                        Some(page) => page,
                        None => {
                            return Reply::Respond(
                                400,
                                vec![],
                                r#"{"message":"bad nextPageToken"}"#.into(),
                            )
                        }
                    },
                    None => (
                        body["timeRange"]["value"]["startTime"].as_i64().unwrap(),
                        body["timeRange"]["value"]["endTime"].as_i64().unwrap(),
                        0,
                    ),
                };
                let first = self.records.partition_point(|(t, _)| *t < start);
                let last = self.records.partition_point(|(t, _)| *t <= end);
                let matching = &self.records[first..last];
                // Page sizes vary, always within the limit.
                let size = limit.min(20 + (n as usize * 53) % 140);
                let page =
                    &matching[offset.min(matching.len())..(offset + size).min(matching.len())];
                let mut out = String::from("{\"value\":[");
                for (i, (_, record)) in page.iter().enumerate() {
                    if i > 0 {
                        out.push_str(if i % 3 == 0 { ", " } else { "," });
                    }
                    out.push_str(record);
                }
                out.push(']');
                if offset + size < matching.len() {
                    let token = format!("page-{n}");
                    state
                        .pages
                        .insert(token.clone(), (start, end, offset + size));
                    out.push_str(&format!(",\"nextPageToken\":\"{token}\""));
                }
                out.push('}');
                state.served += 1;
                Reply::Respond(200, vec![], out)
            }
            _ => Reply::Respond(404, vec![], String::new()),
        }
    }
}

fn new_token(state: &mut FakeState) -> String {
    state.issued += 1;
    let token = if state.jwt_tokens {
        let url = |bytes: &[u8]| {
            aws_smithy_types::base64::encode(bytes)
                .trim_end_matches('=')
                .replace('+', "-")
                .replace('/', "_")
        };
        let iat = chrono::Utc::now().timestamp();
        let claims = format!(
            r#"{{"sub":"{ACCESS_KEY}","iat":{iat},"exp":{},"jti":{}}}"#,
            iat + TOKEN_TTL_SECS as i64,
            state.issued
        );
        let signed = format!(
            "{}.{}",
            url(br#"{"alg":"HS256","typ":"JWT"}"#),
            url(claims.as_bytes())
        );
        let signature = url(&Sha256::digest(format!("{signed}{SECRET_KEY}")));
        format!("{signed}.{signature}")
    } else {
        format!(
            "tok{}x{:x}",
            state.issued,
            Sha256::digest(state.issued.to_le_bytes())[0]
        )
    };
    state.tokens.insert(token.clone(), Instant::now());
    token
}

/// Deterministic audit records over `days` days from `RANGE_START_MS`: a
/// uniform spread, bursts of several records a second, records exactly on
/// day boundaries, and varied spacing and escapes.
fn records(uniform: usize, bursts: usize, days: i64) -> Vec<(i64, String)> {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let span = days * DAY_MS;
    let mut times = Vec::new();
    for _ in 0..uniform {
        times.push(RANGE_START_MS + (next() % span as u64) as i64);
    }
    for b in 0..bursts {
        let at = RANGE_START_MS + (next() % (span - 100_000) as u64) as i64;
        for i in 0..300 {
            times.push(at + i * 250 + (next() % 200) as i64 + b as i64);
        }
    }
    // On the boundaries: the first and last millisecond of some days.
    for day in [0, 1, days / 2, days - 1] {
        times.push(RANGE_START_MS + day * DAY_MS);
        times.push(RANGE_START_MS + (day + 1) * DAY_MS - 1);
    }
    times.sort_unstable();
    times
        .into_iter()
        .enumerate()
        .map(|(n, t)| {
            let record = match n % 4 {
                0 => format!(
                    r#"{{"timestamp":{t},"user":"alice@example.com","ipAddress":"203.0.113.7","resourceType":"Login","resourceName":"console-{n}","action":"'alice@example.com' logged in via password","actionType":"LOGIN","result":"Successful"}}"#
                ),
                1 => format!(
                    r#"{{ "timestamp": {t}, "user": "bob@example.com", "ipAddress": "198.51.100.4", "resourceType": "Account Group", "resourceName": "TEST-{n}", "action": "created", "actionType": "CREATE", "result": "Successful" }}"#
                ),
                2 => format!(
                    "{{\"result\":\"Failed\",\"actionType\":\"UPDATE\",\"timestamp\":{t},\"user\":\"\\u00e9lodie@example.com\",\"resourceName\":\"ポリシー-{n}\",\"action\":\"updated \\\"policy\\\"\",\"resourceType\":\"Policy\",\"ipAddress\":\"192.0.2.1\"}}"
                ),
                _ => format!(
                    "{{\n  \"timestamp\" : {t},\n  \"user\" : \"svc-{n}\",\n  \"ipAddress\" : null,\n  \"resourceType\" : \"Access Key\",\n  \"resourceName\" : \"key-{n}\",\n  \"action\" : \"read\",\n  \"actionType\" : \"READ\",\n  \"result\" : \"Success\"\n}}"
                ),
            };
            (t, record)
        })
        .collect()
}

/// The message id the product must give a record, computed independently:
/// sorted keys, no whitespace, SHA-256.
fn expected_id(record: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(record).unwrap();
    format!(
        "api-{:x}",
        Sha256::digest(serde_json::to_vec(&value).unwrap())
    )
}

/// `YYYY/MM/DD` of epoch ms in JST.
fn jst_day(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms + 9 * 3_600_000).unwrap();
    t.format("%Y/%m/%d").to_string()
}

fn backfill_args<'a>(
    bucket: &'a str,
    api_url: &'a str,
    (from, to): (&'a str, &'a str),
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "backfill",
        "--bucket",
        bucket,
        "--tenant",
        TENANT,
        "--api-url",
        api_url,
        "--from",
        from,
        "--to",
        to,
        "--no-cache",
    ];
    args.extend_from_slice(extra);
    args
}

fn with_keys(mut command: std::process::Command) -> std::process::Command {
    command
        .env("PRISMA_ACCESS_KEY_ID", ACCESS_KEY)
        .env("PRISMA_SECRET_KEY", SECRET_KEY);
    command
}

/// Checks the archive holds every record exactly once, byte for byte, under
/// its day in JST, with its provenance; returns the checkpoint keys.
async fn audit_archive(
    moto: &Moto,
    bucket: &str,
    records: &[(i64, String)],
    api_url: &str,
) -> Vec<String> {
    let objects = moto.objects(bucket).await;
    let mut checkpoints = Vec::new();
    let mut by_body: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, object) in &objects {
        if key.starts_with("_state/") {
            checkpoints.push(key.clone());
            continue;
        }
        assert!(!key.starts_with("_quarantine/"), "quarantined: {key}");
        *by_body.entry(object.body.as_str()).or_default() += 1;
        assert_eq!(
            object.metadata.get("source").map(String::as_str),
            Some("prisma-api"),
            "{key}"
        );
        assert_eq!(
            object.metadata.get("prisma-api-url").map(String::as_str),
            Some(api_url),
            "{key}"
        );
        assert!(object.metadata.contains_key("fetched-at-ms"), "{key}");
        assert_eq!(object.message_id(), expected_id(&object.body), "{key}");
    }
    let expected: BTreeSet<&str> = records.iter().map(|(_, r)| r.as_str()).collect();
    let missing = expected
        .iter()
        .filter(|r| !by_body.contains_key(*r))
        .count();
    let extra = by_body.keys().filter(|b| !expected.contains(*b)).count();
    let doubled = by_body.values().filter(|n| **n > 1).count();
    assert_eq!(
        (missing, extra, doubled),
        (0, 0, 0),
        "missing, not served (re-encoded?), stored twice"
    );
    assert_eq!(objects.len() - checkpoints.len(), records.len());
    for (t, record) in records.iter().step_by(97) {
        let key = objects
            .iter()
            .find(|(_, o)| o.body == *record)
            .map(|(k, _)| k.clone())
            .unwrap();
        assert!(
            key.starts_with(&format!("{TENANT}/{}/", jst_day(*t))),
            "{key} for {t}"
        );
    }
    checkpoints
}

#[tokio::test(flavor = "multi_thread")]
async fn archives_120_days_exactly_once_and_resumes_from_checkpoints() {
    let records = records(4_000, 4, 120);
    assert!(records.len() >= 5_000);
    let api = FakePrisma::start(
        records.clone(),
        10,
        Faults {
            every_429: 17,
            every_500: 23,
            every_revoke: 41,
            reset_at: Some(11),
        },
    )
    .await;
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    // 120 days: 2026-01-01 to 2026-04-30 included.
    let args = backfill_args(
        &bucket,
        &api.url,
        ("2026-01-01", "2026-04-30"),
        &["--api-token-renew-secs", "2"],
    );
    let mut command = with_keys(moto.command(&args));
    command.env("RUST_LOG", "trace");
    let started = Instant::now();
    let output = kit::run_with_limit(command, Duration::from_secs(150));
    let log = stderr(&output);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!(
        "first run: {:?}, fake API: {}",
        started.elapsed(),
        api.stats()
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        &log[log.len().saturating_sub(4000)..]
    );
    // Credentials and tokens never printed, even at trace level.
    for secret in [ACCESS_KEY, SECRET_KEY, "tok1x"] {
        assert!(
            !log.contains(secret) && !stdout.contains(secret),
            "{secret} printed"
        );
    }
    let first = summary(&output);
    assert_eq!(first["records"], records.len() as u64, "{first}");
    assert_eq!(first["stored"], records.len() as u64, "{first}");
    assert_eq!(first["windows"], 120, "{first}");
    assert_eq!(first["windows_incomplete"], 0, "{first}");
    assert!(first["throttled"].as_u64().unwrap() > 0, "{first}");
    {
        let state = api.state.lock().unwrap();
        assert!(
            state.extends > 0 && state.unauthorized > 0,
            "token renewals exercised"
        );
        assert!(
            state.errors > 0 && state.resets == 1 && state.throttled > 0,
            "faults exercised"
        );
    }
    let checkpoints = audit_archive(&moto, &bucket, &records, &api.url).await;
    assert_eq!(checkpoints.len(), 120, "one checkpoint per day");

    // A rerun finds every window done: nothing read, nothing written.
    let output = kit::run_with_limit(with_keys(moto.command(&args)), Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rerun = summary(&output);
    assert_eq!(
        (
            rerun["windows_skipped"].as_u64(),
            rerun["stored"].as_u64(),
            rerun["records"].as_u64()
        ),
        (Some(120), Some(0), Some(0)),
        "{rerun}"
    );
    assert_eq!(moto.objects(&bucket).await.len(), records.len() + 120);

    // Without the checkpoints, a rerun reads everything again and finds
    // every record already archived.
    let again = backfill_args(
        &bucket,
        &api.url,
        ("2026-04-01", "2026-04-30"),
        &["--state-prefix", "_state/other/"],
    );
    let output = kit::run_with_limit(with_keys(moto.command(&again)), Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let recheck = summary(&output);
    assert_eq!(recheck["stored"], 0, "{recheck}");
    assert_eq!(recheck["already_present"], recheck["records"], "{recheck}");

    // The API unreachable: retries, then exit 1; the checkpoints stay.
    let closed = format!("http://127.0.0.1:{}", kit::free_port());
    let args = backfill_args(
        &bucket,
        &closed,
        ("2026-01-01", "2026-05-31"),
        &["--api-max-attempts", "3"],
    );
    let output = kit::run_with_limit(with_keys(moto.command(&args)), Duration::from_secs(60));
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        log.contains("after 3 attempt(s)") && log.contains("retrying"),
        "{log}"
    );
    let after: Vec<String> = moto
        .objects(&bucket)
        .await
        .into_keys()
        .filter(|k| k.starts_with("_state/backfill/"))
        .collect();
    assert_eq!(after, checkpoints);
}

/// What a new user meets against a busy tenant (issue #24): tokens that
/// expire within seconds, as JWTs saying so, and 429s without `Retry-After`
/// on about 8 % of the searches, with default settings. Follows the same
/// documents as the fake (Prisma Cloud API reference: "Login", "Extend
/// Session", "Get Audit Logs"; the rate-limit page: 429 beyond the limit).
/// Every record is archived once; no request goes out with an expired token
/// (renewed from the token's own `exp` before it runs out, or replaced by a
/// login when the pacer held the request past that); a 429 is retried at
/// the next slot, not after a backoff.
#[tokio::test(flavor = "multi_thread")]
async fn short_lived_tokens_and_429s_lose_and_double_nothing_and_cost_a_slot_each() {
    let records = records(700, 1, 40);
    let api = FakePrisma::start(
        records.clone(),
        10,
        Faults {
            every_429: 12,
            every_500: 1_000_000,
            every_revoke: 1_000_000,
            reset_at: None,
        },
    )
    .await;
    api.state.lock().unwrap().jwt_tokens = true;
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let args = backfill_args(&bucket, &api.url, ("2026-01-01", "2026-02-09"), &[]);
    let mut command = with_keys(moto.command(&args));
    command.env("RUST_LOG", "info");
    let started = Instant::now();
    let output = kit::run_with_limit(command, Duration::from_secs(120));
    let elapsed = started.elapsed();
    let log = stderr(&output);
    println!("run: {elapsed:?}, fake API: {}", api.stats());
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        &log[log.len().saturating_sub(4000)..]
    );
    let run = summary(&output);
    assert_eq!(run["stored"], records.len() as u64, "{run}");
    assert_eq!(run["windows_incomplete"], 0, "{run}");
    let checkpoints = audit_archive(&moto, &bucket, &records, &api.url).await;
    assert_eq!(checkpoints.len(), 40, "one checkpoint per day");
    let state = api.state.lock().unwrap();
    assert!(
        state.throttled >= 3,
        "429s exercised: {}",
        api_stats(&state)
    );
    assert!(
        state.logins + state.extends >= 3,
        "tokens renewed: {}",
        api_stats(&state)
    );
    assert_eq!(
        state.unauthorized,
        state.revoked,
        "a request carried an expired token: {}",
        api_stats(&state)
    );
    // 429s without Retry-After (the fake sends one for its first two) are
    // retried at once, at the pacer's next slot.
    let retries: Vec<&str> = log.lines().filter(|l| l.contains("HTTP 429")).collect();
    assert!(
        retries.iter().any(|l| l.contains("retry_in_ms=0"))
            && retries
                .iter()
                .all(|l| l.contains("retry_in_ms=0") || l.contains("retry_in_ms=1000")),
        "{retries:#?}"
    );
    // How long that takes is measured in bench/backfill.py (BENCHMARKS.md,
    // section 9), not asserted here: moto's PUTs on a loaded machine would
    // make a time limit flaky.
}

fn api_stats(s: &FakeState) -> String {
    format!(
        "logins {}, extends {}, 401s {} ({} revoked), 429s {}, pages {}",
        s.logins, s.extends, s.unauthorized, s.revoked, s.throttled, s.served
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_run_then_rerun_archives_exactly_once() {
    let records = records(900, 2, 30);
    let api = FakePrisma::start(
        records.clone(),
        100,
        Faults {
            every_429: 29,
            every_500: 31,
            every_revoke: 37,
            reset_at: None,
        },
    )
    .await;
    let moto = Moto::start().await;
    // Versioned, so an overwrite would show as a second version.
    let bucket = moto.versioned_bucket().await;
    let args = backfill_args(
        &bucket,
        &api.url,
        ("2026-01-01", "2026-01-30"),
        &["--api-requests-per-sec", "50", "--concurrency", "8"],
    );
    let mut kills = Vec::new();
    for target in [150, 700] {
        let mut host = Host::spawn(with_keys(moto.command(&args)));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stored = moto.object_count(&bucket).await;
            if stored >= target {
                break;
            }
            assert!(Instant::now() < deadline, "no progress: {stored} objects");
            assert!(host.running(), "ended before the kill");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        host.kill9();
        kills.push(moto.object_count(&bucket).await);
    }
    assert!(
        kills.iter().all(|n| *n < records.len()),
        "killed mid-run: {kills:?}"
    );
    let output = kit::run_with_limit(with_keys(moto.command(&args)), Duration::from_secs(90));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let summary = summary(&output);
    assert!(
        summary["windows_skipped"].as_u64().unwrap() > 0,
        "{summary}"
    );
    let checkpoints = audit_archive(&moto, &bucket, &records, &api.url).await;
    assert_eq!(checkpoints.len(), 30);
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let page = moto
            .s3
            .list_object_versions()
            .bucket(&bucket)
            .set_key_marker(key_marker)
            .set_version_id_marker(version_marker)
            .send()
            .await
            .unwrap();
        for version in page.versions() {
            *per_key
                .entry(version.key().unwrap().to_string())
                .or_default() += 1;
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
    }
    assert_eq!(per_key.len(), records.len() + 30);
    assert!(
        per_key.values().all(|n| *n == 1),
        "an object was overwritten"
    );
    println!("killed at {kills:?} objects; fake API: {}", api.stats());
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_or_missing_credentials_exit_2_and_write_nothing() {
    let api = FakePrisma::start(
        records(50, 0, 5),
        100,
        Faults {
            every_429: 1_000,
            every_500: 1_000,
            every_revoke: 1_000,
            reset_at: None,
        },
    )
    .await;
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let args = backfill_args(&bucket, &api.url, ("2026-01-01", "2026-01-05"), &[]);
    let wrong_secret = "sk-wrong-Vq1Lz8Hs";
    let mut command = moto.command(&args);
    command
        .env("PRISMA_ACCESS_KEY_ID", ACCESS_KEY)
        .env("PRISMA_SECRET_KEY", wrong_secret)
        .env("RUST_LOG", "trace");
    let output = kit::run_with_limit(command, Duration::from_secs(60));
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert!(
        log.contains("refused the access key") && log.contains("PRISMA_SECRET_KEY"),
        "{log}"
    );
    assert!(
        !log.contains(wrong_secret) && !log.contains(ACCESS_KEY),
        "{log}"
    );
    assert_eq!(api.state.lock().unwrap().refused_logins, 1);
    assert!(moto.objects(&bucket).await.is_empty());

    // No key at all: refused before any request, naming where to put it.
    let output = kit::run_with_limit(moto.command(&args), Duration::from_secs(30));
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert!(
        log.contains("PRISMA_ACCESS_KEY_ID") && log.contains("--credentials-file"),
        "{log}"
    );

    // A credentials file works the same, and its content is never echoed.
    let dir = std::env::temp_dir().join(kit::unique("creds"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("prisma.env");
    std::fs::write(
        &file,
        format!("PRISMA_ACCESS_KEY_ID={ACCESS_KEY}\nPRISMA_SECRET_KEY={SECRET_KEY}\n"),
    )
    .unwrap();
    let mut with_file = args.clone();
    let path = file.to_str().unwrap().to_string();
    with_file.extend_from_slice(&["--credentials-file", &path]);
    let output = kit::run_with_limit(moto.command(&with_file), Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(summary(&output)["stored"], 58);

    // --follow: after the range it keeps polling; SIGTERM stops it cleanly.
    let mut follow = with_file.clone();
    follow.extend_from_slice(&["--follow", "--follow-interval-mins", "1"]);
    let mut host = Host::spawn(moto.command(&follow));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(host.running(), "--follow keeps running");
    let stopped_at = Instant::now();
    host.term();
    // Waited for off the runtime: the API fake answers on it meanwhile.
    let output = tokio::task::spawn_blocking(move || host.wait(Duration::from_secs(20)))
        .await
        .unwrap()
        .unwrap_or_else(|output| panic!("no exit after SIGTERM:\n{}", stderr(&output)));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stopped_at.elapsed() < Duration::from_secs(5));
    let followed = summary(&output);
    assert_eq!(
        (
            followed["windows_skipped"].as_u64(),
            followed["stored"].as_u64()
        ),
        (Some(5), Some(0)),
        "{followed}"
    );

    std::fs::write(&file, format!("{SECRET_KEY}\n")).unwrap();
    let output = kit::run_with_limit(moto.command(&with_file), Duration::from_secs(30));
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert!(
        log.contains("--credentials-file") && !log.contains(SECRET_KEY),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_outage_mid_range_exits_1_keeps_checkpoints_and_a_rerun_finishes() {
    let records = records(300, 0, 10);
    let quiet = Faults {
        every_429: 1_000,
        every_500: 1_000,
        every_revoke: 1_000,
        reset_at: None,
    };
    let api = FakePrisma::start(records.clone(), 100, quiet).await;
    api.state.lock().unwrap().outage_after = Some(4);
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let args = backfill_args(
        &bucket,
        &api.url,
        ("2026-01-01", "2026-01-10"),
        &["--api-max-attempts", "3", "--page-size", "100"],
    );
    let output = kit::run_with_limit(with_keys(moto.command(&args)), Duration::from_secs(60));
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        log.contains("HTTP 503") && log.contains("after 3 attempt(s)"),
        "{log}"
    );
    let cut = summary(&output);
    let incomplete = cut["windows_incomplete"].as_u64().unwrap();
    assert!((1..10).contains(&incomplete), "{cut}");
    let checkpoints: Vec<String> = moto
        .objects(&bucket)
        .await
        .into_keys()
        .filter(|k| k.starts_with("_state/"))
        .collect();
    assert_eq!(checkpoints.len() as u64, 10 - incomplete, "{cut}");

    // The API is back: the rerun skips the completed days and finishes.
    api.state.lock().unwrap().outage_after = None;
    let output = kit::run_with_limit(with_keys(moto.command(&args)), Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rerun = summary(&output);
    assert_eq!(
        rerun["windows_skipped"].as_u64(),
        Some(10 - incomplete),
        "{rerun}"
    );
    let all = audit_archive(&moto, &bucket, &records, &api.url).await;
    assert_eq!(all.len(), 10);
    assert!(checkpoints.iter().all(|c| all.contains(c)));
}

/// A late backfill into an archive that `run` already sealed: the old
/// records are delivered now, so they land in later digests of the same
/// chain, and the whole chain (run's objects, backfill's, the checkpoints
/// left out) proves valid.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_backfill_lands_in_later_digests_and_the_chain_verifies() {
    let records = records(200, 1, 5);
    let api = FakePrisma::start(
        records.clone(),
        100,
        Faults {
            every_429: 1_000,
            every_500: 1_000,
            every_revoke: 1_000,
            reset_at: None,
        },
    )
    .await;
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let dir = kit::temp_dir("backfill-digests");
    let (key, public) = kit::openssl_keys(&dir, "digest");
    let period = (1.0f64 / 60.0).to_string();
    let sealing = [
        "--digest-key-file",
        key.to_str().unwrap(),
        "--digest-period-mins",
        period.as_str(),
        "--digest-delay-mins",
        "0",
    ];

    // First the live archive: two messages drained and sealed.
    let queue = moto.tenant_queue(TENANT, false).await;
    for n in 0..2 {
        let now = chrono::Utc::now().timestamp_millis() as u64;
        moto.send(&queue, &kit::audit_log("alice@example.com", now, n), None)
            .await;
    }
    let mut drain = vec![
        "run",
        "--drain",
        "--bucket",
        bucket.as_str(),
        "--queue",
        queue.as_str(),
    ];
    drain.extend_from_slice(&sealing);
    let output = moto.run(&drain);
    assert!(output.status.success(), "{}", stderr(&output));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let mut seal = vec!["seal", "--bucket", bucket.as_str()];
    seal.extend_from_slice(&sealing);
    assert!(moto.run(&seal).status.success());
    let sealed_before = moto
        .keys(&bucket)
        .await
        .into_iter()
        .filter(|k| k.starts_with("_digest/acme/"))
        .count();
    assert!(sealed_before >= 1);

    // Then five days of January, months late.
    let mut extra = vec!["--api-requests-per-sec", "50"];
    extra.extend_from_slice(&sealing);
    let args = backfill_args(&bucket, &api.url, ("2026-01-01", "2026-01-05"), &extra);
    let output = kit::run_with_limit(with_keys(moto.command(&args)), Duration::from_secs(120));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(summary(&output)["sealed"]["chains"].as_u64().unwrap() >= 1);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(moto.run(&seal).status.success());

    let archived = moto
        .keys(&bucket)
        .await
        .into_iter()
        .filter(|k| k.starts_with("acme/"))
        .count() as u64;
    assert_eq!(archived, records.len() as u64 + 2);
    let output = moto.run(&[
        "verify",
        "--bucket",
        &bucket,
        "--public-key",
        public.to_str().unwrap(),
        "--digests",
        "--format",
        "json",
    ]);
    let report = kit::stdout_json(&output);
    let proof = &report["digests"];
    assert_eq!(proof["problems"], serde_json::json!([]), "{proof:#}");
    assert_eq!(proof["log_files"], archived, "{proof:#}");
    assert_eq!(proof["valid_log_files"], archived);
    // The January records were listed by digests written after the live
    // ones: nothing went back into a sealed period.
    assert!(proof["chains"]["acme"]["digests"].as_u64().unwrap() as usize > sealed_before);
}
