//! Where a message that cannot be routed is kept: under the quarantine
//! prefix, named by its queue and message id, so nothing is dropped and a
//! hostile name cannot escape the prefix.

/// The quarantine key of a message: `{prefix}{queue}/{message_id}.json`, with
/// every byte outside `[A-Za-z0-9._-]` percent-encoded so a hostile id or queue
/// name cannot escape the prefix.
pub fn quarantine_key(prefix: &str, queue_name: &str, message_id: &str) -> String {
    format!(
        "{prefix}{}/{}.json",
        encode_segment(queue_name),
        encode_segment(message_id)
    )
}

fn encode_segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => out.push(byte as char),
            b'.' if !raw.trim_matches('.').is_empty() => out.push('.'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}
