//! The session token and when to renew it.
//!
//! Prisma Cloud's tokens are JWTs whose claims say when they were issued and
//! when they expire (`iat`, `exp`, whole seconds). The client renews a token
//! before it runs out, at the configured age or sooner when the token says
//! it lives less: a request sent with an expired token costs a refused
//! request and a login, a renewal only the renewal.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::Secret;

/// A token and when to renew it.
pub(super) struct Session {
    pub(super) token: Secret,
    issued: Instant,
    renew_after: Duration,
    /// How long the token surely lives, when it says.
    sure: Option<Duration>,
}

impl Session {
    /// A token asked for at `asked` (when the request went out, so that its
    /// age is never underestimated).
    pub(super) fn new(token: String, asked: Instant, configured: Duration) -> Self {
        let sure = lifetime(&token).map(sure_life);
        let renew_after = renew_after(configured, sure);
        if renew_after < configured {
            tracing::debug!(
                renew_after_ms = renew_after.as_millis() as u64,
                "the token expires sooner than the configured renewal age; renewing it earlier"
            );
        }
        Self {
            token: Secret::new(token),
            issued: asked,
            renew_after,
            sure,
        }
    }

    /// Whether the token is due for renewal by `at` (when the request that
    /// would carry it can start).
    pub(super) fn due_by(&self, at: Instant) -> bool {
        at.saturating_duration_since(self.issued) >= self.renew_after
    }

    /// Whether the API still takes the token at `at`, with a tenth of its
    /// life to spare for the request's way there. A token due for renewal
    /// but no longer alive is replaced by a login: extending it would be
    /// refused (the pacer can hold a request back past the renewal age).
    pub(super) fn alive_at(&self, at: Instant) -> bool {
        self.sure
            .is_none_or(|sure| at.saturating_duration_since(self.issued) < sure.mul_f64(0.9))
    }
}

/// How long a token of `lifetime` (`exp - iat` in whole seconds) surely
/// lives: up to a second less, as it may have been issued late in `iat`'s
/// second; for lifetimes of 2 s or less, half.
pub(super) fn sure_life(lifetime: Duration) -> Duration {
    if lifetime > Duration::from_secs(2) {
        lifetime - Duration::from_secs(1)
    } else {
        lifetime / 2
    }
}

/// The age at which to renew a token that surely lives `sure` (when it
/// says): at 80 % of it, and never later than `configured`. Tokens of the
/// documented 600 s are renewed at about 480 s, as before.
pub(super) fn renew_after(configured: Duration, sure: Option<Duration>) -> Duration {
    sure.map_or(configured, |sure| configured.min(sure.mul_f64(0.8)))
}

#[derive(Deserialize)]
struct Claims {
    exp: f64,
    iat: f64,
}

/// `exp - iat` of a JWT, or `None` when the token is not one (it is opaque
/// to the client otherwise; the signature is the API's business).
pub(super) fn lifetime(token: &str) -> Option<Duration> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    // base64url without padding, as JWTs are written.
    let mut standard: String = payload
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !standard.len().is_multiple_of(4) {
        standard.push('=');
    }
    let json = aws_smithy_types::base64::decode(&standard).ok()?;
    let claims: Claims = serde_json::from_slice(&json).ok()?;
    let seconds = claims.exp - claims.iat;
    (seconds.is_finite() && seconds > 0.0 && seconds < 1e9)
        .then(|| Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let url = |bytes: &[u8]| {
            aws_smithy_types::base64::encode(bytes)
                .trim_end_matches('=')
                .replace('+', "-")
                .replace('/', "_")
        };
        format!(
            "{}.{}.c2lnbmF0dXJl",
            url(br#"{"alg":"HS256","typ":"JWT"}"#),
            url(claims.as_bytes())
        )
    }

    #[test]
    fn reads_the_lifetime_of_a_jwt() {
        let token = jwt(r#"{"sub":"k","iat":1767193200,"exp":1767193800,"x":"é?>"}"#);
        assert_eq!(lifetime(&token), Some(Duration::from_secs(600)));
        assert_eq!(
            lifetime(&jwt(r#"{"iat":10,"exp":13}"#)),
            Some(Duration::from_secs(3))
        );
        for opaque in [
            "tok1x5f",
            "a.b.c",
            &jwt(r#"{"exp":13}"#),
            &jwt(r#"{"iat":13,"exp":10}"#),
            &format!("{}.extra", jwt(r#"{"iat":10,"exp":13}"#)),
        ] {
            assert_eq!(lifetime(opaque), None, "{opaque}");
        }
    }

    #[test]
    fn renews_before_the_token_runs_out() {
        let configured = Duration::from_secs(480);
        let renew = |lifetime: Option<u64>| {
            renew_after(
                configured,
                lifetime.map(|s| sure_life(Duration::from_secs(s))),
            )
        };
        // Opaque tokens: the configured age.
        assert_eq!(renew(None), configured);
        // The documented 600 s: about the configured age.
        assert!(renew(Some(600)) <= configured && renew(Some(600)) > Duration::from_secs(470));
        // 3 s: before the 2 s a token issued at .999 of a second is sure to live.
        assert_eq!(sure_life(Duration::from_secs(3)), Duration::from_secs(2));
        assert_eq!(renew(Some(3)), Duration::from_millis(1600));
        // Tiny lifetimes still leave half of it.
        assert_eq!(renew(Some(1)), Duration::from_millis(400));
        // A shorter configured age wins.
        assert_eq!(
            renew_after(Duration::from_secs(1), Some(Duration::from_secs(599))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn due_by_the_start_of_the_request() {
        let asked = Instant::now();
        let session = Session::new(
            jwt(r#"{"iat":10,"exp":13}"#),
            asked,
            Duration::from_secs(480),
        );
        assert!(!session.due_by(asked + Duration::from_millis(1500)));
        assert!(session.due_by(asked + Duration::from_millis(1600)));
        // Past 90 % of the 2 s it surely lives: log in rather than extend.
        assert!(session.alive_at(asked + Duration::from_millis(1700)));
        assert!(!session.alive_at(asked + Duration::from_millis(1800)));
        let opaque = Session::new("tok".into(), asked, Duration::from_secs(2));
        assert!(!opaque.due_by(asked + Duration::from_millis(1999)));
        assert!(opaque.due_by(asked + Duration::from_secs(2)));
        // An opaque token is taken to live until the API says otherwise.
        assert!(opaque.alive_at(asked + Duration::from_secs(3600)));
    }
}
