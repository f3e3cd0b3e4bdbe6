//! Slack request verification: `v0=` + hex HMAC-SHA256 of
//! `v0:{X-Slack-Request-Timestamp}:{raw body}` with the signing secret,
//! compared in constant time, and a timestamp within five minutes of now in
//! either direction (a replayed old request and one stamped in the future
//! are both refused; bolt-js only checks the past).
//!
//! The clock is a parameter so tests can pin it.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub use crate::inbound::{VerifyError, MAX_SKEW_SECS};

/// The expected signature for a body.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Verifies one request at time `now` (Unix seconds).
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(VerifyError::MissingHeader);
    };
    crate::inbound::check_age(timestamp, now)?;
    let expected = sign(secret, timestamp, body);
    if expected.as_bytes().ct_eq(signature.as_bytes()).into() {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vector {
        secret: String,
        timestamp: String,
        body: String,
        signature: String,
    }

    fn vector() -> Vector {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/slack-signature.json"))
                .unwrap();
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        Vector {
            secret: s("signing_secret"),
            timestamp: s("timestamp"),
            body: s("body"),
            signature: s("signature"),
        }
    }

    #[test]
    fn slacks_documented_vector_verifies_at_its_time() {
        let v = vector();
        assert_eq!(
            v.signature,
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
        assert_eq!(
            sign(v.secret.as_bytes(), &v.timestamp, v.body.as_bytes()),
            v.signature
        );
        let now: i64 = v.timestamp.parse().unwrap();
        assert_eq!(
            verify(
                v.secret.as_bytes(),
                Some(&v.timestamp),
                Some(&v.signature),
                v.body.as_bytes(),
                now
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                v.secret.as_bytes(),
                Some(&v.timestamp),
                Some(&v.signature),
                v.body.as_bytes(),
                now + MAX_SKEW_SECS
            ),
            Ok(())
        );
    }

    #[test]
    fn any_change_fails() {
        let v = vector();
        let now: i64 = v.timestamp.parse().unwrap();
        let check = |body: &[u8], ts: &str, sig: &str, at: i64| {
            verify(v.secret.as_bytes(), Some(ts), Some(sig), body, at)
        };
        // Every single changed byte of the body.
        for i in 0..v.body.len() {
            let mut body = v.body.clone().into_bytes();
            body[i] ^= 0x01;
            assert_eq!(
                check(&body, &v.timestamp, &v.signature, now),
                Err(VerifyError::BadSignature),
                "byte {i}"
            );
        }
        let mut sig = v.signature.clone();
        sig.replace_range(10..11, if &sig[10..11] == "0" { "1" } else { "0" });
        assert_eq!(
            check(v.body.as_bytes(), &v.timestamp, &sig, now),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(
                b"another-secret",
                Some(&v.timestamp),
                Some(&v.signature),
                v.body.as_bytes(),
                now
            ),
            Err(VerifyError::BadSignature)
        );
        // A different timestamp invalidates the signature even when fresh.
        let other = (now + 1).to_string();
        assert_eq!(
            check(v.body.as_bytes(), &other, &v.signature, now),
            Err(VerifyError::BadSignature)
        );
        // Stale and future, one second past the window each way.
        assert_eq!(
            check(
                v.body.as_bytes(),
                &v.timestamp,
                &v.signature,
                now + MAX_SKEW_SECS + 1
            ),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            check(
                v.body.as_bytes(),
                &v.timestamp,
                &v.signature,
                now - MAX_SKEW_SECS - 1
            ),
            Err(VerifyError::Future)
        );
        assert_eq!(
            verify(
                v.secret.as_bytes(),
                None,
                Some(&v.signature),
                v.body.as_bytes(),
                now
            ),
            Err(VerifyError::MissingHeader)
        );
        assert_eq!(
            verify(
                v.secret.as_bytes(),
                Some(&v.timestamp),
                None,
                v.body.as_bytes(),
                now
            ),
            Err(VerifyError::MissingHeader)
        );
        assert_eq!(
            check(v.body.as_bytes(), "soon", &v.signature, now),
            Err(VerifyError::BadTimestamp)
        );
    }
}
