//! The access key and the secrets the client holds, which print as `***`.

use std::fmt;

/// A secret string whose `Debug` and `Display` print `***`, so it cannot leak
/// through a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself, for the one place that sends it.
    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A Prisma Cloud access key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id (the `username` of `/login`).
    pub access_key_id: Secret,
    /// The secret key (the `password` of `/login`).
    pub secret_key: Secret,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let credentials = Credentials {
            access_key_id: Secret::new("AKIA-visible".into()),
            secret_key: Secret::new("hunter2".into()),
        };
        let text = format!("{credentials:?} {}", credentials.secret_key);
        assert!(
            !text.contains("hunter2") && !text.contains("AKIA"),
            "{text}"
        );
    }
}
