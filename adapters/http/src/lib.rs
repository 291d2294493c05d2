//! A `wasi:http/proxy` component that serves the routing component over HTTP.
//!
//! `POST /route` takes `{"settings": {...}, "message": {...}}` or
//! `{"settings": {...}, "messages": [...]}` (the JSON shapes of
//! `tests/vectors/`) and answers with `audit-archiver route`'s lines: one JSON
//! object for `message`, NDJSON (one line per message, in order) for
//! `messages`. Bad input is `400` with the WIT case name and its detail; a
//! method other than POST is `405`, any other path `404`.
//!
//! It imports the router (`wac plug` fills that import with the routing
//! component) and nothing outside the `wasi:http/proxy` world. That is why it
//! is `no_std`: Rust's std for `wasm32-wasip2` would also import
//! `wasi:cli/environment`, `exit` and `terminal-*`, which a proxy host need not
//! provide. Hence `crates/guest-support` for the allocator and panic handler, as in
//! `transform/`.
#![no_std]

extern crate alloc;

mod api;

use alloc::string::ToString;
use alloc::vec::Vec;

use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::StreamError;

use api::{Answer, MAX_BODY_BYTES};

// The allocator, the trapping panic handler and `cabi_realloc`, shared by
// every no_std component of the project.
use audit_archiver_guest_support as _;

struct Handler;

wasip2::http::proxy::export!(Handler);

impl wasip2::exports::http::incoming_handler::Guest for Handler {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let answer = answer(&request);
        respond(response_out, answer);
    }
}

fn answer(request: &IncomingRequest) -> Answer {
    let path_and_query = request.path_with_query().unwrap_or_default();
    let path = path_and_query.split('?').next().unwrap_or_default();
    if path != "/route" {
        return Answer::not_found(path);
    }
    if !matches!(request.method(), Method::Post) {
        return Answer::method_not_allowed();
    }
    match read_body(request) {
        Ok(body) => api::route(&body),
        Err(answer) => answer,
    }
}

/// The whole request body, or the answer that refuses it.
fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, Answer> {
    let unreadable = || Answer::bad_request("invalid-request", "the request body cannot be read");
    let body: IncomingBody = request.consume().map_err(|()| unreadable())?;
    let mut bytes = Vec::new();
    {
        let stream = body.stream().map_err(|()| unreadable())?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() > MAX_BODY_BYTES {
                        return Err(Answer::too_large());
                    }
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(_)) => return Err(unreadable()),
            }
        }
    }
    // The stream (a child of the body) is dropped before the body is finished.
    drop(IncomingBody::finish(body));
    Ok(bytes)
}

fn respond(response_out: ResponseOutparam, answer: Answer) {
    let headers = Fields::new();
    let set = |name: &str, value: &str| {
        // Header names and values here are constants or ASCII numbers.
        let _ = headers.set(name, &[value.as_bytes().to_vec()]);
    };
    set("content-type", answer.content_type);
    set("content-length", &answer.body.len().to_string());
    if let Some(allow) = answer.allow {
        set("allow", allow);
    }
    let response = OutgoingResponse::new(headers);
    // Statuses are constants between 200 and 413.
    let _ = response.set_status_code(answer.status);
    let Ok(body) = response.body() else {
        return;
    };
    ResponseOutparam::set(response_out, Ok(response));
    if let Ok(stream) = body.write() {
        // `blocking-write-and-flush` takes at most 4096 bytes per call.
        for chunk in answer.body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                // The client went away; nothing is left to tell it.
                return;
            }
        }
    }
    let _ = OutgoingBody::finish(body, None);
}
