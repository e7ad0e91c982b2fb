//! Compact JWS with RS256: signing with the active key, verification by `kid`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::CryptoError;
use crate::keyring::{KeyRing, SigningKey};
use crate::secret::{b64url, b64url_decode};

#[derive(Serialize, serde::Deserialize)]
struct Header<'a> {
    alg: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    typ: Option<&'a str>,
    kid: &'a str,
}

/// Signs `claims` as a JWT with header `typ` (e.g. `at+jwt` per RFC 9068, or `JWT`).
pub fn sign<C: Serialize>(key: &SigningKey, typ: &str, claims: &C) -> Result<String, CryptoError> {
    let header = serde_json::to_vec(&Header { alg: "RS256", typ: Some(typ), kid: key.kid().as_str() })
        .map_err(|_| CryptoError::Sign)?;
    let payload = serde_json::to_vec(claims).map_err(|_| CryptoError::Sign)?;
    let mut out = String::with_capacity(600);
    out.push_str(&b64url(&header));
    out.push('.');
    out.push_str(&b64url(&payload));
    let sig = key.sign_rs256(out.as_bytes())?;
    out.push('.');
    out.push_str(&b64url(&sig));
    Ok(out)
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported algorithm")]
    Algorithm,
    #[error("unexpected token type")]
    Type,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("bad signature")]
    Signature,
}

/// Verifies the signature and `typ`, then decodes the claims. Claim checks (iss, aud, exp) are the caller's.
pub fn verify<C: DeserializeOwned>(ring: &KeyRing, token: &str, expected_typ: &str) -> Result<C, JwtError> {
    let mut parts = token.splitn(3, '.');
    let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    if s.contains('.') {
        return Err(JwtError::Malformed);
    }
    let header_bytes = b64url_decode(h).ok_or(JwtError::Malformed)?;
    let header: Header<'_> = serde_json::from_slice(&header_bytes).map_err(|_| JwtError::Malformed)?;
    if header.alg != "RS256" {
        return Err(JwtError::Algorithm);
    }
    if !header.typ.is_some_and(|t| {
        t.eq_ignore_ascii_case(expected_typ) || t.eq_ignore_ascii_case(&format!("application/{expected_typ}"))
    }) {
        return Err(JwtError::Type);
    }
    let key = ring.find(header.kid).ok_or(JwtError::UnknownKey)?;
    let sig = b64url_decode(s).ok_or(JwtError::Malformed)?;
    let signed_len = h.len() + 1 + p.len();
    if !key.verify_rs256(&token.as_bytes()[..signed_len], &sig) {
        return Err(JwtError::Signature);
    }
    let payload = b64url_decode(p).ok_or(JwtError::Malformed)?;
    serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::SigningKey;
    use serde_json::{Value, json};

    #[test]
    fn sign_then_verify_and_tamper_detected() {
        let (key, der) = SigningKey::generate().unwrap();
        let again = SigningKey::from_pkcs8(key.kid().clone(), &der).unwrap();
        let ring = KeyRing::new(vec![again]).unwrap();
        let t = sign(&key, "at+jwt", &json!({"sub": "acc_1"})).unwrap();
        let v: Value = verify(&ring, &t, "at+jwt").unwrap();
        assert_eq!(v["sub"], "acc_1");
        assert_eq!(verify::<Value>(&ring, &t, "JWT"), Err(JwtError::Type));
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = b64url(br#"{"sub":"acc_2"}"#);
        parts[1] = &forged;
        assert_eq!(verify::<Value>(&ring, &parts.join("."), "at+jwt"), Err(JwtError::Signature));
    }
}
