//! `bench-endpoint`: a small, fast, in-memory S3 + SQS endpoint on loopback,
//! for benchmarks only (`bench/endpoint.py`, BENCHMARKS.md section 3). moto
//! spends 6–18 ms of CPU per archived message, so against it every client is
//! waiting; this endpoint spends a few µs, so the client is the limit and the
//! host can be compared with a bare SDK loop.
//!
//! It serves only what `audit-archiver run`, `host/examples/bare_loop.rs` and
//! the bench's boto3 loader call: SQS in the AWS JSON 1.0 protocol (`sqs`)
//! and S3 in path style (`s3`). Keep-alive HTTP/1.1 (hyper), one process, no
//! persistence, no authentication (signatures are not checked). Not a test
//! double for the product's tests: those run against moto.
//!
//!     bench-endpoint [--port N] [--threads N]
//!
//! prints `listening on http://127.0.0.1:PORT` once it accepts connections.
//!
//! `GET /_bench/stats` (a path no bucket can have: bucket names start with a
//! letter or digit) answers what the endpoint has seen, for the bench to read
//! instead of guessing: the requests by operation, and for every archived
//! object the time from its message's `SendMessage` to its PUT (ms, from the
//! `x-amz-meta-sqs-sent-ms` the host writes, on the endpoint's own clock).

mod s3;
mod sqs;
mod stats;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The command line.
#[derive(Debug)]
struct Args {
    /// `--port`: 0 picks a free one.
    port: u16,
    /// `--threads`: tokio worker threads; 1 runs everything on the main thread.
    threads: usize,
}

/// A flag the endpoint does not understand, or a bad value.
#[derive(Debug, thiserror::Error)]
#[error("{0}\nusage: bench-endpoint [--port N] [--threads N]")]
struct UsageError(String);

fn parse_args() -> Result<Args, UsageError> {
    let mut parsed = Args {
        port: 0,
        threads: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| UsageError(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--port" => {
                parsed.port = value.parse().map_err(|_| {
                    UsageError(format!("--port {value:?}: give a port number, 0 for any"))
                })?
            }
            "--threads" => {
                parsed.threads = value
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| UsageError(format!("--threads {value:?}: give 1 or more")))?
            }
            other => return Err(UsageError(format!("unknown flag {other}"))),
        }
    }
    Ok(parsed)
}

/// Both services, shared by every connection.
struct Endpoint {
    sqs: sqs::Sqs,
    s3: s3::S3,
    stats: stats::Stats,
}

fn main() -> anyhow::Result<()> {
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("bench-endpoint: {error}");
            std::process::exit(2);
        }
    };
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(args.port))
}

async fn serve(port: u16) -> anyhow::Result<()> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = TcpListener::bind(address)
        .await
        .context("binding the loopback port")?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let endpoint = Arc::new(Endpoint {
        sqs: sqs::Sqs::new(&base_url),
        s3: s3::S3::default(),
        stats: stats::Stats::default(),
    });
    println!("listening on {base_url}");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = accept(listener, endpoint) => {}
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// Serves every connection on its own task: HTTP/1.1 only, keep-alive, no
/// delay on small writes.
async fn accept(listener: TcpListener, endpoint: Arc<Endpoint>) {
    let http = http1::Builder::new();
    loop {
        let socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            // The client gave up before it was accepted: take the next one.
            Err(error) if is_connection_error(&error) => continue,
            // Out of descriptors or the like: wait for some to close.
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let endpoint = endpoint.clone();
        let service = service_fn(move |request| {
            let endpoint = endpoint.clone();
            async move { Ok::<_, Infallible>(handle(&endpoint, request).await) }
        });
        let connection = http.serve_connection(TokioIo::new(socket), service);
        tokio::spawn(async move {
            // A client that leaves mid-request ends only its connection.
            let _ = connection.await;
        });
    }
}

fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// SQS requests name their action in `X-Amz-Target`; everything else is S3,
/// but for the bench's own `/_bench/stats`.
async fn handle(endpoint: &Endpoint, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() == stats::PATH {
        return endpoint.stats.response();
    }
    let action = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("AmazonSQS."))
        .map(str::to_string);
    match action {
        Some(action) => {
            endpoint.stats.count(&action);
            match request.into_body().collect().await {
                Ok(body) => endpoint.sqs.handle(&action, &body.to_bytes()).await,
                Err(_) => sqs::bad_request("the request body could not be read"),
            }
        }
        None => {
            let operation = stats::s3_operation(&request);
            endpoint.stats.count(operation);
            let sent_ms = stats::sent_ms(&request);
            let response = endpoint.s3.handle(request).await;
            if operation == "PutObject" && response.status().is_success() {
                if let Some(sent_ms) = sent_ms {
                    endpoint.stats.stored(sent_ms);
                }
            }
            response
        }
    }
}
