//! What `POST /route` means, apart from HTTP plumbing: the request's JSON
//! shape, the calls into the router, and every answer with its status.

use alloc::format;
use alloc::string::ToString;
use alloc::vec::Vec;

use routing_client::{
    self as router, route_error_parts, settings_error_parts, write_result, Message, MessageJson,
    Settings, SettingsJson,
};
use serde::{Deserialize, Serialize};

/// The largest request body accepted (a batch of thousands of messages fits).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The request: settings (each field defaults as in `audit-archiver route`)
/// and exactly one of `message` or `messages`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteRequest {
    #[serde(default)]
    settings: SettingsJson,
    message: Option<MessageJson>,
    messages: Option<Vec<MessageJson>>,
}

/// A response to send.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// Its `content-type`.
    pub content_type: &'static str,
    /// Its `allow` header, for 405.
    pub allow: Option<&'static str>,
    /// Its body.
    pub body: Vec<u8>,
}

/// The body of every refusal: the WIT case name (or `invalid-request`,
/// `not-found`, `method-not-allowed`, `too-large` for what never reached the
/// router) and a human-readable detail.
#[derive(Serialize)]
struct Refusal<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    settings_error: Option<&'a str>,
    detail: &'a str,
}

impl Answer {
    fn json(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            content_type: "application/json",
            allow: None,
            body,
        }
    }

    fn refusal(status: u16, refusal: &Refusal<'_>) -> Self {
        let mut body = serde_json::to_vec(refusal).expect("a refusal serializes");
        body.push(b'\n');
        Self::json(status, body)
    }

    /// `400`: the request is not one this endpoint can route.
    pub fn bad_request(error: &str, detail: &str) -> Self {
        Self::refusal(
            400,
            &Refusal {
                message_id: None,
                error,
                settings_error: None,
                detail,
            },
        )
    }

    /// `404` for any path but `/route`.
    pub fn not_found(path: &str) -> Self {
        let detail = format!("no such path {path:?}: POST /route");
        Self::refusal(
            404,
            &Refusal {
                message_id: None,
                error: "not-found",
                settings_error: None,
                detail: &detail,
            },
        )
    }

    /// `405` for `/route` with a method other than POST.
    pub fn method_not_allowed() -> Self {
        let mut answer = Self::refusal(
            405,
            &Refusal {
                message_id: None,
                error: "method-not-allowed",
                settings_error: None,
                detail: "POST /route with a JSON body",
            },
        );
        answer.allow = Some("POST");
        answer
    }

    /// `413` for a body over [`MAX_BODY_BYTES`].
    pub fn too_large() -> Self {
        let detail =
            format!("the request body is over {MAX_BODY_BYTES} bytes: send smaller batches");
        Self::refusal(
            413,
            &Refusal {
                message_id: None,
                error: "too-large",
                settings_error: None,
                detail: &detail,
            },
        )
    }
}

/// Routes a request body.
pub fn route(body: &[u8]) -> Answer {
    let request: RouteRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => return Answer::bad_request("invalid-request", &e.to_string()),
    };
    let settings = Settings::from(request.settings);
    if let Err(e) = router::validate_settings(&settings) {
        let (case, detail) = settings_error_parts(&e);
        return Answer::refusal(
            400,
            &Refusal {
                message_id: None,
                error: "invalid-settings",
                settings_error: Some(case),
                detail,
            },
        );
    }
    match (request.message, request.messages) {
        (Some(message), None) => route_one(&settings, message.into()),
        (None, Some(messages)) => route_many(&settings, messages),
        _ => Answer::bad_request(
            "invalid-request",
            "give exactly one of \"message\" (an object) or \"messages\" (an array)",
        ),
    }
}

/// One message: `200` with its line, or `400` with the route error.
fn route_one(settings: &Settings, message: Message) -> Answer {
    let result = router::route(settings, &message);
    match &result {
        Ok(_) => {
            let mut body = Vec::new();
            write_result(&mut body, &message.message_id, &result);
            Answer::json(200, body)
        }
        Err(e) => {
            let (case, detail) = route_error_parts(e);
            Answer::refusal(
                400,
                &Refusal {
                    message_id: Some(&message.message_id),
                    error: case,
                    settings_error: None,
                    detail,
                },
            )
        }
    }
}

/// A batch: `200` with one line per message, in order, errors included (as
/// `audit-archiver route` prints them), in one call into the router.
fn route_many(settings: &Settings, messages: Vec<MessageJson>) -> Answer {
    let messages: Vec<Message> = messages.into_iter().map(Message::from).collect();
    let results = router::route_batch(settings, &messages);
    let mut body = Vec::new();
    for (message, result) in messages.iter().zip(&results) {
        write_result(&mut body, &message.message_id, result);
    }
    Answer {
        status: 200,
        content_type: "application/x-ndjson",
        allow: None,
        body,
    }
}
