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

mod s3;
mod sqs;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use hyper::server::conn::AddrIncoming;
use hyper::service::{make_service_fn, service_fn};
use hyper::{Body, Request, Response, Server};

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
    let mut incoming = AddrIncoming::bind(&address).context("binding the loopback port")?;
    incoming.set_nodelay(true);
    let base_url = format!("http://{}", incoming.local_addr());
    let endpoint = Arc::new(Endpoint {
        sqs: sqs::Sqs::new(&base_url),
        s3: s3::S3::default(),
    });
    let make_service = make_service_fn(move |_| {
        let endpoint = endpoint.clone();
        async move {
            Ok::<_, Infallible>(service_fn(move |request| {
                let endpoint = endpoint.clone();
                async move { Ok::<_, Infallible>(handle(&endpoint, request).await) }
            }))
        }
    });
    let server = Server::builder(incoming)
        .http1_only(true)
        .http1_keepalive(true)
        .serve(make_service);
    println!("listening on {base_url}");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = server => result.context("serving")?,
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// SQS requests name their action in `X-Amz-Target`; everything else is S3.
async fn handle(endpoint: &Endpoint, request: Request<Body>) -> Response<Body> {
    let action = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("AmazonSQS."))
        .map(str::to_string);
    match action {
        Some(action) => match hyper::body::to_bytes(request.into_body()).await {
            Ok(body) => endpoint.sqs.handle(&action, &body).await,
            Err(_) => sqs::bad_request("the request body could not be read"),
        },
        None => endpoint.s3.handle(request).await,
    }
}
