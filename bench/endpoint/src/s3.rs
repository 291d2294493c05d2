//! S3 in memory, path-style (`/{bucket}/{key}`), REST with XML errors.
//!
//! Modelled on the *Amazon S3 API Reference* (CreateBucket, HeadBucket,
//! PutObject, HeadObject, GetObject, ListObjectsV2, "Error responses") and
//! the *Amazon S3 User Guide*'s "Add preconditions to S3 operations with
//! conditional requests": a PUT with `If-None-Match: *` fails with 412
//! `PreconditionFailed` when the key exists (checked and stored under one
//! lock, so of two racing PUTs exactly one wins); a PUT whose
//! `x-amz-checksum-sha256` does not match its body fails with 400
//! `BadDigest`; `x-amz-meta-*` headers are stored and returned. Bodies sent
//! with `Content-Encoding: aws-chunked` are decoded (the SDKs use it for
//! trailing checksums).
//!
//! Not modelled: versioning, Object Lock, encryption, ranges, delimiters,
//! multipart uploads, signatures.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;

use aws_smithy_types::base64;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest as _, Sha256};

use crate::sqs::md5_hex;

/// What S3 leaves unescaped in URL-encoded listings.
const KEY_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Every bucket, behind one lock.
#[derive(Default)]
pub struct S3 {
    buckets: Mutex<HashMap<String, BTreeMap<String, Object>>>,
}

struct Object {
    body: Bytes,
    content_type: Option<HeaderValue>,
    /// `x-amz-meta-*` headers, as sent.
    metadata: Vec<(hyper::header::HeaderName, HeaderValue)>,
    etag: String,
    checksum_sha256: Option<String>,
    last_modified: DateTime<Utc>,
}

/// An S3 error: status, code, message.
#[derive(Debug)]
struct S3Error(StatusCode, &'static str, &'static str);

const NO_SUCH_BUCKET: S3Error = S3Error(
    StatusCode::NOT_FOUND,
    "NoSuchBucket",
    "The specified bucket does not exist",
);
const NO_SUCH_KEY: S3Error = S3Error(
    StatusCode::NOT_FOUND,
    "NoSuchKey",
    "The specified key does not exist.",
);
const NOT_IMPLEMENTED: S3Error = S3Error(
    StatusCode::NOT_IMPLEMENTED,
    "NotImplemented",
    "A header or query you provided implies functionality that the bench endpoint does not serve.",
);

impl S3Error {
    fn response(&self, method: &Method) -> Response<Full<Bytes>> {
        let S3Error(status, code, message) = self;
        // A HEAD response carries no body: the SDK goes by the status.
        let body = if method == Method::HEAD {
            Full::default()
        } else {
            Full::from(format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
            ))
        };
        Response::builder()
            .status(*status)
            .header("content-type", "application/xml")
            .body(body)
            .expect("static headers")
    }
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Trailing headers of an `aws-chunked` body: (lower-case name, value).
type Trailers = Vec<(String, String)>;

/// The payload of an `aws-chunked` body: `{hex size}[;extensions]\r\n{data}\r\n`
/// chunks up to a zero-size one, then trailers (returned as name, value).
fn decode_aws_chunked(raw: &[u8]) -> Option<(Vec<u8>, Trailers)> {
    let mut body = Vec::new();
    let mut rest = raw;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            break;
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
    let trailers = std::str::from_utf8(rest)
        .ok()?
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    Some((body, trailers))
}

impl S3 {
    /// One request, routed by method and path.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path().trim_start_matches('/').to_string();
        let query = parts.uri.query().unwrap_or("").to_string();
        let (bucket, key) = match path.split_once('/') {
            Some((bucket, key)) => (bucket.to_string(), percent_decode_str(key).decode_utf8()),
            None => (path.clone(), Ok("".into())),
        };
        let Ok(key) = key else {
            return S3Error(
                StatusCode::BAD_REQUEST,
                "InvalidURI",
                "The key is not UTF-8.",
            )
            .response(&parts.method);
        };
        let result = match (&parts.method, key.is_empty()) {
            (&Method::PUT, true) => self.create_bucket(&bucket),
            (&Method::HEAD, true) => self.head_bucket(&bucket),
            (&Method::GET, true) if !bucket.is_empty() => self.list(&bucket, &query),
            (&Method::PUT, false) => match body.collect().await {
                Ok(collected) => self.put(&bucket, &key, &parts.headers, collected.to_bytes()),
                Err(_) => Err(S3Error(
                    StatusCode::BAD_REQUEST,
                    "IncompleteBody",
                    "The request body could not be read.",
                )),
            },
            (&Method::HEAD, false) => self.get(&bucket, &key, &parts.headers, false),
            (&Method::GET, false) => self.get(&bucket, &key, &parts.headers, true),
            _ => Err(NOT_IMPLEMENTED),
        };
        result.unwrap_or_else(|error| error.response(&parts.method))
    }

    fn create_bucket(&self, bucket: &str) -> Result<Response<Full<Bytes>>, S3Error> {
        self.buckets
            .lock()
            .expect("buckets")
            .entry(bucket.to_string())
            .or_default();
        Ok(Response::builder()
            .header("location", format!("/{bucket}"))
            .body(Full::default())
            .expect("valid header"))
    }

    fn head_bucket(&self, bucket: &str) -> Result<Response<Full<Bytes>>, S3Error> {
        if !self.buckets.lock().expect("buckets").contains_key(bucket) {
            return Err(NO_SUCH_BUCKET);
        }
        Ok(Response::new(Full::default()))
    }

    fn put(
        &self,
        bucket: &str,
        key: &str,
        headers: &HeaderMap,
        raw: Bytes,
    ) -> Result<Response<Full<Bytes>>, S3Error> {
        match header(headers, "if-none-match") {
            None | Some("*") => {}
            Some(_) => return Err(NOT_IMPLEMENTED),
        }
        if header(headers, "if-match").is_some() {
            return Err(NOT_IMPLEMENTED);
        }
        let mut checksum = header(headers, "x-amz-checksum-sha256").map(str::to_string);
        let chunked = header(headers, "content-encoding")
            .is_some_and(|encodings| encodings.split(',').any(|e| e.trim() == "aws-chunked"));
        let body = if chunked {
            let (body, trailers) = decode_aws_chunked(&raw).ok_or(S3Error(
                StatusCode::BAD_REQUEST,
                "IncompleteBody",
                "The aws-chunked body is malformed.",
            ))?;
            if let Some((_, value)) = trailers
                .into_iter()
                .find(|(name, _)| name == "x-amz-checksum-sha256")
            {
                checksum = Some(value);
            }
            Bytes::from(body)
        } else {
            raw
        };
        if let Some(expected) = &checksum {
            if *expected != base64::encode(Sha256::digest(&body)) {
                return Err(S3Error(
                    StatusCode::BAD_REQUEST,
                    "BadDigest",
                    "The SHA256 you specified did not match the calculated checksum.",
                ));
            }
        }
        let etag = format!("\"{}\"", md5_hex(&body));
        let object = Object {
            body,
            content_type: headers.get("content-type").cloned(),
            metadata: headers
                .iter()
                .filter(|(name, _)| name.as_str().starts_with("x-amz-meta-"))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            etag: etag.clone(),
            checksum_sha256: checksum.clone(),
            last_modified: Utc::now(),
        };
        let mut buckets = self.buckets.lock().expect("buckets");
        let objects = buckets.get_mut(bucket).ok_or(NO_SUCH_BUCKET)?;
        if header(headers, "if-none-match") == Some("*") && objects.contains_key(key) {
            return Err(S3Error(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
            ));
        }
        objects.insert(key.to_string(), object);
        drop(buckets);
        let mut response = Response::builder().header("etag", etag);
        if let Some(checksum) = checksum {
            response = response.header("x-amz-checksum-sha256", checksum);
        }
        Ok(response.body(Full::default()).expect("valid headers"))
    }

    /// HeadObject (`with_body` false) or GetObject.
    fn get(
        &self,
        bucket: &str,
        key: &str,
        headers: &HeaderMap,
        with_body: bool,
    ) -> Result<Response<Full<Bytes>>, S3Error> {
        let buckets = self.buckets.lock().expect("buckets");
        let object = buckets
            .get(bucket)
            .ok_or(NO_SUCH_BUCKET)?
            .get(key)
            .ok_or(NO_SUCH_KEY)?;
        let mut response = Response::builder()
            .header("content-length", object.body.len())
            .header("etag", &object.etag)
            .header(
                "last-modified",
                object
                    .last_modified
                    .format("%a, %d %b %Y %H:%M:%S GMT")
                    .to_string(),
            );
        if let Some(content_type) = &object.content_type {
            response = response.header("content-type", content_type);
        }
        for (name, value) in &object.metadata {
            response = response.header(name, value);
        }
        if header(headers, "x-amz-checksum-mode") == Some("ENABLED") {
            if let Some(checksum) = &object.checksum_sha256 {
                response = response.header("x-amz-checksum-sha256", checksum);
            }
        }
        let body = if with_body {
            Full::from(object.body.clone())
        } else {
            Full::default()
        };
        Ok(response.body(body).expect("valid headers"))
    }

    /// ListObjectsV2 (`list-type=2`): prefix, start-after, continuation
    /// token (the last key of the previous page), max-keys, URL encoding.
    fn list(&self, bucket: &str, query: &str) -> Result<Response<Full<Bytes>>, S3Error> {
        let mut params: HashMap<String, String> = HashMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode_str(&value.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            params.insert(name.to_string(), value);
        }
        if params.get("list-type").map(String::as_str) != Some("2")
            || params.contains_key("delimiter")
        {
            return Err(NOT_IMPLEMENTED);
        }
        let prefix = params.get("prefix").cloned().unwrap_or_default();
        let max_keys: usize = params
            .get("max-keys")
            .and_then(|m| m.parse().ok())
            .unwrap_or(1000)
            .min(1000);
        let token = params.get("continuation-token");
        let after = token.or(params.get("start-after")).cloned();
        let url_encoded = params.get("encoding-type").map(String::as_str) == Some("url");
        let encode = |text: &str| {
            if url_encoded {
                utf8_percent_encode(text, KEY_SAFE).to_string()
            } else {
                xml_escape(text)
            }
        };
        let buckets = self.buckets.lock().expect("buckets");
        let objects = buckets.get(bucket).ok_or(NO_SUCH_BUCKET)?;
        let start = match &after {
            Some(after) => std::ops::Bound::Excluded(after.clone()),
            None => std::ops::Bound::Included(prefix.clone()),
        };
        let mut matching = objects
            .range((start, std::ops::Bound::Unbounded))
            .skip_while(|(key, _)| !key.starts_with(&prefix) && key.as_str() < prefix.as_str())
            .take_while(|(key, _)| key.starts_with(&prefix));
        let mut xml = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
        );
        let mut count = 0;
        let mut last = None;
        for (key, object) in matching.by_ref().take(max_keys) {
            count += 1;
            let _ = write!(
                xml,
                "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
                encode(key),
                object.last_modified.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                xml_escape(&object.etag),
                object.body.len()
            );
            last = Some(key.clone());
        }
        let truncated = matching.next().is_some();
        let _ = write!(
            xml,
            "<Name>{}</Name><Prefix>{}</Prefix><KeyCount>{count}</KeyCount><MaxKeys>{max_keys}</MaxKeys><IsTruncated>{truncated}</IsTruncated>",
            xml_escape(bucket),
            encode(&prefix)
        );
        if url_encoded {
            xml.push_str("<EncodingType>url</EncodingType>");
        }
        if let Some(token) = token {
            let _ = write!(
                xml,
                "<ContinuationToken>{}</ContinuationToken>",
                xml_escape(token)
            );
        }
        if truncated {
            let next = last.expect("a truncated page has a last key");
            let _ = write!(
                xml,
                "<NextContinuationToken>{}</NextContinuationToken>",
                xml_escape(&next)
            );
        }
        xml.push_str("</ListBucketResult>");
        Ok(Response::builder()
            .header("content-type", "application/xml")
            .body(Full::from(xml))
            .expect("static headers"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_chunked_bodies_decode_with_their_trailers() {
        let raw = b"5;chunk-signature=abc\r\nhello\r\n0\r\nx-amz-checksum-sha256:XYZ=\r\n\r\n";
        let (body, trailers) = decode_aws_chunked(raw).unwrap();
        assert_eq!(body, b"hello");
        assert_eq!(
            trailers,
            [("x-amz-checksum-sha256".to_string(), "XYZ=".to_string())]
        );
        assert!(decode_aws_chunked(b"5\r\nhel").is_none());
    }

    #[test]
    fn a_conditional_put_never_overwrites() {
        let s3 = S3::default();
        s3.create_bucket("b").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("if-none-match", HeaderValue::from_static("*"));
        assert!(s3.put("b", "k", &headers, Bytes::from("one")).is_ok());
        let second = s3.put("b", "k", &headers, Bytes::from("two"));
        assert!(matches!(
            second,
            Err(S3Error(StatusCode::PRECONDITION_FAILED, _, _))
        ));
        let buckets = s3.buckets.lock().unwrap();
        assert_eq!(buckets["b"]["k"].body, Bytes::from("one"));
    }
}
