//! Discord interaction verification: Ed25519 over the `X-Signature-Timestamp`
//! bytes followed by the raw body, with the application's public key
//! (serenity's verifier). Discord deliberately sends bad signatures and drops
//! endpoints that accept them. We also refuse timestamps more than five
//! minutes old or in the future, which Discord's libraries don't check.

use serenity::interactions_endpoint::Verifier;

pub use crate::inbound::{VerifyError, MAX_SKEW_SECS};

/// The application's public key, parsed once.
pub struct PublicKey(Verifier);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublicKey(..)")
    }
}

impl PublicKey {
    /// From the hex in `DISCORD_PUBLIC_KEY`.
    pub fn from_hex(hex_key: &str) -> Result<Self, String> {
        let bytes =
            hex::decode(hex_key.trim()).map_err(|_| "DISCORD_PUBLIC_KEY is not hex".to_string())?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "DISCORD_PUBLIC_KEY must be 32 bytes (64 hex digits)".to_string())?;
        Verifier::try_new(bytes)
            .map(PublicKey)
            .map_err(|e| format!("DISCORD_PUBLIC_KEY is not a valid Ed25519 key: {e}"))
    }
}

/// Verifies one request at `now` (Unix seconds).
pub fn verify(
    key: &PublicKey,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
        return Err(VerifyError::MissingHeader);
    };
    key.0
        .verify(signature, timestamp, body)
        .map_err(|()| VerifyError::BadSignature)?;
    crate::inbound::check_age(timestamp, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> serde_json::Value {
        serde_json::from_str(include_str!("../../tests/fixtures/discord-ed25519.json")).unwrap()
    }

    #[test]
    fn the_fixed_vector_verifies_and_its_variants_do_not() {
        let v = fixture();
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        let key = PublicKey::from_hex(&s("PUBLIC_KEY")).unwrap();
        assert_eq!(
            s("PUBLIC_KEY"),
            "c5568d0facd66bddee281dcb9c8ac02e169c5c20741b215b2539a96bb183c5d6"
        );
        let body = s("BODY_VALID");
        assert_eq!(body.len(), 474);
        let now: i64 = s("TIMESTAMP_VALID").parse().unwrap();
        assert_eq!(now, 1657322078);
        let check =
            |sig: &str, ts: &str, body: &[u8], at: i64| verify(&key, Some(sig), Some(ts), body, at);
        assert_eq!(
            check(
                &s("SIGNATURE_VALID"),
                &s("TIMESTAMP_VALID"),
                body.as_bytes(),
                now
            ),
            Ok(())
        );
        // The invalid triple.
        assert_eq!(
            check(
                &s("SIGNATURE_INVALID"),
                &s("TIMESTAMP_INVALID"),
                s("BODY_INVALID").as_bytes(),
                now
            ),
            Err(VerifyError::BadSignature)
        );
        // The valid body with the invalid timestamp.
        assert_eq!(
            check(
                &s("SIGNATURE_VALID"),
                &s("TIMESTAMP_INVALID"),
                body.as_bytes(),
                now
            ),
            Err(VerifyError::BadSignature)
        );
        // Any changed byte.
        for i in 0..body.len() {
            let mut b = body.clone().into_bytes();
            b[i] ^= 0x20;
            assert_eq!(
                check(&s("SIGNATURE_VALID"), &s("TIMESTAMP_VALID"), &b, now),
                Err(VerifyError::BadSignature),
                "byte {i}"
            );
        }
        let mut sig = s("SIGNATURE_VALID").into_bytes();
        sig[0] = if sig[0] == b'2' { b'3' } else { b'2' };
        assert_eq!(
            check(
                std::str::from_utf8(&sig).unwrap(),
                &s("TIMESTAMP_VALID"),
                body.as_bytes(),
                now
            ),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            check("not-hex", &s("TIMESTAMP_VALID"), body.as_bytes(), now),
            Err(VerifyError::BadSignature)
        );
        // Age, with the clock pinned: fine within five minutes, refused after.
        assert_eq!(
            check(
                &s("SIGNATURE_VALID"),
                &s("TIMESTAMP_VALID"),
                body.as_bytes(),
                now + MAX_SKEW_SECS
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &s("SIGNATURE_VALID"),
                &s("TIMESTAMP_VALID"),
                body.as_bytes(),
                now + MAX_SKEW_SECS + 1
            ),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            check(
                &s("SIGNATURE_VALID"),
                &s("TIMESTAMP_VALID"),
                body.as_bytes(),
                now - MAX_SKEW_SECS - 1
            ),
            Err(VerifyError::Future)
        );
        assert_eq!(
            verify(&key, None, Some("1"), b"", now),
            Err(VerifyError::MissingHeader)
        );
    }

    #[test]
    fn bad_keys_are_reported() {
        assert!(PublicKey::from_hex("zz").is_err());
        assert!(PublicKey::from_hex("abcd")
            .unwrap_err()
            .contains("32 bytes"));
    }
}
