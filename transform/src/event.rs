//! The `event` time source: the earliest `timestamp` (epoch milliseconds) of
//! the audit record(s) in a message body.
//!
//! The body is one JSON object, or a JSON array of objects. Each object must
//! hold a top-level `timestamp` member that is a non-negative JSON integer
//! (no fraction, no exponent, no minus sign) fitting in `u64`; the other
//! members are skipped but validated. The scanner is a strict RFC 8259
//! validator (no trailing commas, no comments, no byte-order mark, no leading
//! zeros, no raw control characters in strings), iterative rather than
//! recursive so deep nesting cannot overflow the stack, and it never panics.
//!
//! Errors, first one found wins except that [`EventError::InvalidBody`] beats
//! the others (the whole body is validated first-to-last and stops there):
//! - [`EventError::InvalidBody`]: not JSON, not an object or array, or an
//!   array element that is not an object;
//! - [`EventError::MissingTime`]: an empty array, or an object without
//!   `timestamp`;
//! - [`EventError::InvalidTime`]: a `timestamp` that is not a non-negative
//!   integer (string, float, negative, `null`, too large), or an object with
//!   more than one `timestamp` member (ambiguous).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Why the body gives no event time. Each case carries a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventError {
    /// The body is not JSON, not an object or array, or an array element is
    /// not an object.
    InvalidBody(String),
    /// A record has no `timestamp`, or the array is empty.
    MissingTime(String),
    /// A `timestamp` is not a non-negative integer that fits in `u64`.
    InvalidTime(String),
}

/// The earliest `timestamp` of the record (object) or records (array of
/// objects) in `body`, in epoch milliseconds. See the module docs.
pub fn earliest_timestamp(body: &str) -> Result<u64, EventError> {
    let mut p = Parser {
        b: body.as_bytes(),
        i: 0,
    };
    p.ws();
    let mut earliest: Option<u64> = None;
    let mut time_error: Option<EventError> = None;
    let mut record = |outcome: Record, what: &dyn Fn() -> String| {
        let err = match outcome {
            Record::Time(t) => {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
                return;
            }
            Record::Missing => EventError::MissingTime(format!("{} has no \"timestamp\"", what())),
            Record::Invalid(why) => {
                EventError::InvalidTime(format!("the \"timestamp\" of {} {why}", what()))
            }
            Record::Duplicate => {
                EventError::InvalidTime(format!("{} has more than one \"timestamp\"", what()))
            }
        };
        time_error.get_or_insert(err);
    };
    match p.peek() {
        Some(b'{') => {
            let r = p.object().map_err(body_error)?;
            record(r, &|| String::from("the record"));
        }
        Some(b'[') => {
            p.i += 1;
            p.ws();
            if p.peek() == Some(b']') {
                p.i += 1;
                p.end().map_err(body_error)?;
                return Err(EventError::MissingTime(String::from(
                    "the body is an empty JSON array",
                )));
            }
            let mut index = 0_usize;
            loop {
                p.ws();
                if p.peek() != Some(b'{') {
                    let kind = p.kind();
                    p.value().map_err(body_error)?;
                    return Err(EventError::InvalidBody(format!(
                        "array element {index} is {kind}, not a JSON object"
                    )));
                }
                let r = p.object().map_err(body_error)?;
                record(r, &|| format!("array element {index}"));
                p.ws();
                match p.peek() {
                    Some(b',') => p.i += 1,
                    Some(b']') => {
                        p.i += 1;
                        break;
                    }
                    _ => return Err(body_error(p.unexpected("',' or ']'"))),
                }
                index += 1;
            }
        }
        _ => {
            let kind = p.kind();
            p.value().map_err(body_error)?;
            p.end().map_err(body_error)?;
            return Err(EventError::InvalidBody(format!(
                "the body is {kind}, not a JSON object or array"
            )));
        }
    }
    p.end().map_err(body_error)?;
    if let Some(err) = time_error {
        return Err(err);
    }
    // An object always yields a time or an error; so does a non-empty array.
    earliest.ok_or_else(|| EventError::MissingTime(String::from("no record has a \"timestamp\"")))
}

fn body_error(why: String) -> EventError {
    EventError::InvalidBody(format!("the body is not valid JSON: {why}"))
}

/// What one record says about its time.
enum Record {
    Time(u64),
    Missing,
    Invalid(&'static str),
    Duplicate,
}

/// A JSON number's meaning as a timestamp.
enum Number {
    Unsigned(u64),
    Negative,
    NotInteger,
    TooLarge,
}

/// A cursor over the body. Errors are reasons naming a byte offset.
struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn unexpected(&self, wanted: &str) -> String {
        match self.peek() {
            None => format!("expected {wanted} at byte {} (end of input)", self.i),
            Some(_) => format!("expected {wanted} at byte {}", self.i),
        }
    }

    fn expect(&mut self, byte: u8, wanted: &str) -> Result<(), String> {
        if self.peek() == Some(byte) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.unexpected(wanted))
        }
    }

    /// Only whitespace may remain.
    fn end(&mut self) -> Result<(), String> {
        self.ws();
        if self.i == self.b.len() {
            Ok(())
        } else {
            Err(format!(
                "unexpected data after the value at byte {}",
                self.i
            ))
        }
    }

    /// A description of the value starting here, for messages.
    fn kind(&self) -> &'static str {
        match self.peek() {
            Some(b'{') => "an object",
            Some(b'[') => "an array",
            Some(b'"') => "a string",
            Some(b'-' | b'0'..=b'9') => "a number",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            _ => "not a JSON value",
        }
    }

    /// An object (at `{`): its `timestamp` outcome.
    fn object(&mut self) -> Result<Record, String> {
        self.expect(b'{', "'{'")?;
        let mut outcome = Record::Missing;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(outcome);
        }
        loop {
            self.ws();
            let is_timestamp = self.string()?;
            self.ws();
            self.expect(b':', "':'")?;
            self.ws();
            if is_timestamp {
                let this = self.timestamp_value()?;
                outcome = match outcome {
                    Record::Missing => this,
                    _ => Record::Duplicate,
                };
            } else {
                self.value()?;
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(outcome);
                }
                _ => return Err(self.unexpected("',' or '}'")),
            }
        }
    }

    /// The value of a `timestamp` member.
    fn timestamp_value(&mut self) -> Result<Record, String> {
        let why = match self.peek() {
            Some(b'-' | b'0'..=b'9') => {
                // The number is consumed here, not skipped below.
                return Ok(match self.number()? {
                    Number::Unsigned(t) => Record::Time(t),
                    Number::Negative => Record::Invalid("is negative"),
                    Number::NotInteger => Record::Invalid("is not an integer"),
                    Number::TooLarge => Record::Invalid("is too large"),
                });
            }
            Some(b'"') => "is a string, not an integer",
            Some(b'n') => "is null, not an integer",
            Some(b't' | b'f') => "is a boolean, not an integer",
            Some(b'{') => "is an object, not an integer",
            Some(b'[') => "is an array, not an integer",
            _ => return Err(self.unexpected("a value")),
        };
        self.value()?;
        Ok(Record::Invalid(why))
    }

    /// A string (at `"`); true if it decodes to exactly `timestamp`.
    fn string(&mut self) -> Result<bool, String> {
        const WANT: &[u8] = b"timestamp";
        self.expect(b'"', "a string")?;
        // How much of WANT the decoded string matched so far; None = no match.
        let mut matched = Some(0_usize);
        let mut feed = |unit: u32| {
            matched = matched
                .and_then(|n| (WANT.get(n).map(|&w| u32::from(w)) == Some(unit)).then_some(n + 1));
        };
        loop {
            let Some(byte) = self.peek() else {
                return Err(self.unexpected("'\"'"));
            };
            self.i += 1;
            match byte {
                b'"' => return Ok(matched == Some(WANT.len())),
                b'\\' => {
                    let Some(esc) = self.peek() else {
                        return Err(self.unexpected("an escape"));
                    };
                    self.i += 1;
                    let unit = match esc {
                        b'"' | b'\\' | b'/' => u32::from(esc),
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => 0x0a,
                        b'r' => 0x0d,
                        b't' => 0x09,
                        b'u' => self.hex4()?,
                        _ => return Err(format!("invalid escape at byte {}", self.i - 1)),
                    };
                    feed(unit);
                }
                0x00..=0x1f => {
                    return Err(format!(
                        "control character in a string at byte {}",
                        self.i - 1
                    ))
                }
                // Bytes of multi-byte UTF-8 sequences never match ASCII.
                _ => feed(u32::from(byte)),
            }
        }
    }

    /// Four hex digits of a `\u` escape (any code unit: RFC 8259's grammar
    /// accepts unpaired surrogates).
    fn hex4(&mut self) -> Result<u32, String> {
        let mut unit = 0_u32;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| self.unexpected("a hex digit"))?;
            self.i += 1;
            unit = unit * 16 + digit;
        }
        Ok(unit)
    }

    /// A number (at `-` or a digit).
    fn number(&mut self) -> Result<Number, String> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let mut value = Some(0_u64);
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while let Some(d @ b'0'..=b'9') = self.peek() {
                    self.i += 1;
                    value = value
                        .and_then(|v| v.checked_mul(10))
                        .and_then(|v| v.checked_add(u64::from(d - b'0')));
                }
            }
            _ => return Err(self.unexpected("a digit")),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            integer = false;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            integer = false;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.digits()?;
        }
        Ok(match (negative, integer, value) {
            (true, _, _) => Number::Negative,
            (false, false, _) => Number::NotInteger,
            (false, true, None) => Number::TooLarge,
            (false, true, Some(v)) => Number::Unsigned(v),
        })
    }

    /// One or more digits.
    fn digits(&mut self) -> Result<(), String> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.unexpected("a digit"));
        }
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        Ok(())
    }

    /// A literal word (`true`, `false`, `null`).
    fn word(&mut self, word: &[u8]) -> Result<(), String> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.unexpected("a value"))
        }
    }

    /// Skips (and validates) any value, without recursion.
    fn value(&mut self) -> Result<(), String> {
        // Open containers: b'[' or b'{'.
        let mut open: Vec<u8> = Vec::new();
        loop {
            // Expecting a value.
            self.ws();
            let mut complete = true;
            match self.peek() {
                Some(b'{') => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                    } else {
                        open.push(b'{');
                        self.member_name()?;
                        complete = false;
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                    } else {
                        open.push(b'[');
                        complete = false;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b'-' | b'0'..=b'9') => {
                    self.number()?;
                }
                Some(b't') => self.word(b"true")?,
                Some(b'f') => self.word(b"false")?,
                Some(b'n') => self.word(b"null")?,
                _ => return Err(self.unexpected("a value")),
            }
            if !complete {
                continue;
            }
            // A value is complete: close containers until one wants more.
            loop {
                let Some(&container) = open.last() else {
                    return Ok(());
                };
                self.ws();
                match (self.peek(), container) {
                    (Some(b','), _) => {
                        self.i += 1;
                        if container == b'{' {
                            self.ws();
                            self.member_name()?;
                        }
                        break;
                    }
                    (Some(b']'), b'[') | (Some(b'}'), b'{') => {
                        self.i += 1;
                        open.pop();
                    }
                    (_, b'[') => return Err(self.unexpected("',' or ']'")),
                    _ => return Err(self.unexpected("',' or '}'")),
                }
            }
        }
    }

    /// `"name"` then `:` (inside an object skipped by [`Parser::value`]).
    fn member_name(&mut self) -> Result<(), String> {
        self.string()?;
        self.ws();
        self.expect(b':', "':'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kind(r: Result<u64, EventError>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(EventError::InvalidBody(_)) => "invalid-body",
            Err(EventError::MissingTime(_)) => "missing-time",
            Err(EventError::InvalidTime(_)) => "invalid-time",
        }
    }

    #[test]
    fn one_record() {
        let body = r#"{"timestamp": 1750991540913, "user": "alice@example.com", "ipAddress": "203.0.113.7",
     "resourceType": "Account Group", "resourceName": "TEST", "actionType": "CREATE",
     "action": "'alice@example.com'(with role 'System Admin':'System Admin') created the account group.",
     "result": "Successful"}"#;
        assert_eq!(earliest_timestamp(body), Ok(1_750_991_540_913));
        assert_eq!(earliest_timestamp(r#" {"timestamp":0} "#), Ok(0));
        assert_eq!(
            earliest_timestamp(r#"{"a":{"timestamp":5},"timestamp":7}"#),
            Ok(7)
        );
        assert_eq!(
            earliest_timestamp(r#"{"timest\u0061mp":7,"x":[1,{"y":null}]}"#),
            Ok(7)
        );
        assert_eq!(
            earliest_timestamp(&format!(r#"{{"timestamp":{}}}"#, u64::MAX)),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn arrays_use_the_earliest() {
        assert_eq!(
            earliest_timestamp(r#"[{"timestamp":30},{"timestamp":10},{"timestamp":20}]"#),
            Ok(10)
        );
        assert_eq!(earliest_timestamp("[{\"timestamp\":1}]\n"), Ok(1));
    }

    #[test]
    fn invalid_bodies() {
        for body in [
            "",
            " ",
            "nope",
            "{",
            "[",
            r#"{"timestamp":1,}"#,
            r#"[{"timestamp":1},]"#,
            r#"{"timestamp":1}{"timestamp":2}"#,
            r#"{"timestamp":1} x"#,
            r#"{"timestamp":01}"#,
            r#"{"timestamp":1.}"#,
            r#"{"timestamp":1e}"#,
            r#"{"timestamp":-}"#,
            r#"{"timestamp":+1}"#,
            r#"{"timestamp" 1}"#,
            r#"{timestamp:1}"#,
            r#"{'timestamp':1}"#,
            "{\"timestamp\":1,\"a\":\"x\ty\"}",
            r#"{"timestamp":1,"a":"\x"}"#,
            r#"{"timestamp":1,"a":"\u12G4"}"#,
            r#"{"timestamp":1,"a":tru}"#,
            r#"{"timestamp":1,"a":[1 2]}"#,
            r#"{"timestamp":1,"a":{"b"}}"#,
            r#"{"timestamp":1,"a":{"b":1]}"#,
            r#"{"timestamp":1,"a":[1}}"#,
            "\u{feff}{\"timestamp\":1}",
            r#"{"timestamp":1} // comment"#,
            "\"string\"",
            "42",
            "null",
            "true",
            "[1]",
            r#"[{"timestamp":1}, 2]"#,
            r#"[{"timestamp":1}, []]"#,
            r#"[{"timestamp":"x"}, null]"#,
            r#"[{}, "x"]"#,
            r#"[{"timestamp":1} {"timestamp":2}]"#,
            r#"{"a":1,"timestamp":"x"} junk"#,
        ] {
            assert_eq!(kind(earliest_timestamp(body)), "invalid-body", "{body:?}");
        }
    }

    #[test]
    fn missing_time() {
        for body in [
            "{}",
            "[]",
            " [ ] ",
            r#"{"time":1}"#,
            r#"{"Timestamp":1}"#,
            r#"{"timestamps":1}"#,
            r#"{"timestam":1}"#,
            r#"{"a":{"timestamp":1}}"#,
            r#"[{"timestamp":1},{}]"#,
            r#"[{},{"timestamp":"x"}]"#,
        ] {
            assert_eq!(kind(earliest_timestamp(body)), "missing-time", "{body:?}");
        }
    }

    #[test]
    fn invalid_time() {
        for body in [
            r#"{"timestamp":"1750991540913"}"#,
            r#"{"timestamp":1750991540913.0}"#,
            r#"{"timestamp":1.75e12}"#,
            r#"{"timestamp":1E3}"#,
            r#"{"timestamp":-1}"#,
            r#"{"timestamp":-0}"#,
            r#"{"timestamp":null}"#,
            r#"{"timestamp":true}"#,
            r#"{"timestamp":{}}"#,
            r#"{"timestamp":[1]}"#,
            r#"{"timestamp":18446744073709551616}"#,
            r#"{"timestamp":1,"timestamp":1}"#,
            r#"[{"timestamp":1},{"timestamp":"x"}]"#,
            r#"[{"timestamp":"x"},{}]"#,
        ] {
            assert_eq!(kind(earliest_timestamp(body)), "invalid-time", "{body:?}");
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let depth = 1_000_000;
        let body = format!(
            r#"{{"timestamp":5,"a":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert_eq!(earliest_timestamp(&body), Ok(5));
        let unclosed = format!(r#"{{"timestamp":5,"a":{}"#, "[{\"a\":".repeat(depth));
        assert_eq!(kind(earliest_timestamp(&unclosed)), "invalid-body");
    }

    /// Arbitrary JSON values, for comparison with serde_json.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e6_f64..1e6).prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![Just("timestamp".to_string()), any::<String>()],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn never_panics(body in any::<String>()) {
            let _ = earliest_timestamp(&body);
        }

        #[test]
        fn accepts_only_json(body in r#"[\[\]{}",:0-9a-fimlnprstu\\ .eE+-]{0,64}"#) {
            let ours = earliest_timestamp(&body);
            match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(value) => {
                    // Valid JSON is only rejected as a body for its shape.
                    if matches!(ours, Err(EventError::InvalidBody(_))) {
                        prop_assert_eq!(kind(reference(&value)), "invalid-body", "{:?}", body);
                    }
                }
                Err(e) => {
                    // serde_json also refuses some grammatical JSON: numbers
                    // beyond f64 and unpaired surrogates. Everything else it
                    // refuses, we refuse too.
                    let msg = e.to_string();
                    prop_assume!(!msg.contains("out of range") && !msg.contains("surrogate"));
                    prop_assert_eq!(kind(ours), "invalid-body", "{:?}: {}", body, msg);
                }
            }
        }

        #[test]
        fn mutated_json_matches_serde_json(
            value in json_value(),
            at in any::<proptest::sample::Index>(),
            op in 0_u8..3,
            byte in proptest::sample::select(br#"{}[]",:0123456789-+.eEtrufalsn \"#.to_vec()),
        ) {
            let mut bytes = serde_json::to_string(&value).unwrap().into_bytes();
            let i = at.index(bytes.len() + 1);
            match op {
                0 => bytes.insert(i, byte),
                1 if i < bytes.len() => { bytes.remove(i); }
                _ if i < bytes.len() => bytes[i] = byte,
                _ => bytes.push(byte),
            }
            // Mutating inside a multi-byte character may break UTF-8.
            let Ok(body) = String::from_utf8(bytes) else { return Ok(()) };
            let ours = earliest_timestamp(&body);
            match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(value) => {
                    let expected = reference(&value);
                    // serde_json keeps the last of duplicate members; we refuse them.
                    if !matches!(ours, Err(EventError::InvalidTime(ref m)) if m.contains("more than one")) {
                        prop_assert_eq!(kind(ours.clone()), kind(expected.clone()), "{:?}", body);
                        if let Ok(t) = expected {
                            prop_assert_eq!(ours, Ok(t));
                        }
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    prop_assume!(!msg.contains("out of range") && !msg.contains("surrogate"));
                    prop_assert_eq!(kind(ours), "invalid-body", "{:?}: {}", body, msg);
                }
            }
        }

        #[test]
        fn agrees_with_serde_json(value in json_value(), pretty in any::<bool>()) {
            let body = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                serde_json::to_string(&value).unwrap()
            };
            let expected = reference(&value);
            prop_assert_eq!(kind(earliest_timestamp(&body)), kind(expected.clone()));
            if let Ok(t) = expected {
                prop_assert_eq!(earliest_timestamp(&body), Ok(t));
            }
        }
    }

    /// An independent reference on serde_json's parsed value (objects there
    /// cannot hold duplicate members, so that case does not arise).
    fn reference(v: &serde_json::Value) -> Result<u64, EventError> {
        use serde_json::Value;
        let one = |o: &serde_json::Map<String, Value>| -> Result<u64, EventError> {
            match o.get("timestamp") {
                None => Err(EventError::MissingTime(String::new())),
                Some(Value::Number(n)) if n.is_u64() => Ok(n.as_u64().unwrap()),
                Some(_) => Err(EventError::InvalidTime(String::new())),
            }
        };
        match v {
            Value::Object(o) => one(o),
            Value::Array(a) if a.is_empty() => Err(EventError::MissingTime(String::new())),
            Value::Array(a) => {
                if a.iter().any(|e| !e.is_object()) {
                    return Err(EventError::InvalidBody(String::new()));
                }
                let mut min = u64::MAX;
                for e in a {
                    min = min.min(one(e.as_object().unwrap())?);
                }
                Ok(min)
            }
            _ => Err(EventError::InvalidBody(String::new())),
        }
    }
}
