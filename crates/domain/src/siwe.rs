//! Sign-In with Ethereum (EIP-4361): the message a wallet signs, parsed strictly by the
//! specification's ABNF; the checks a sign-in makes of it (this server's domain and origin, version
//! 1, an allowed chain, its times); EIP-55 checksummed addresses; and the EIP-191 `personal_sign`
//! signature, whose signer (secp256k1 public-key recovery, Keccak-256) must be the message's
//! address. Pure rules: time is passed in, the nonce's bookkeeping belongs to the store.
//!
//! Only externally owned accounts sign in: a contract wallet's EIP-1271 signature would need a
//! call to a chain node, which this server does not make.
//!
//! Written here rather than taken from the `siwe` crate (0.6.1): that crate verifies a
//! re-serialisation of the parsed message instead of the bytes the wallet signed, accepts any
//! `v % 27` as a recovery id, does not hold nonces to the ABNF's alphanumerics, and brings second
//! copies of `k256`, `rand` and `thiserror` for what is a line-based grammar and one recovery.

use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use sha3::{Digest, Keccak256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::UnixTime;

/// The largest message accepted, in bytes (real ones are a few hundred).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;
/// The longest nonce accepted in a message (ours are 32 characters; the ABNF sets only a minimum).
pub const MAX_NONCE_CHARS: usize = 128;
/// The shortest nonce the ABNF allows.
pub const MIN_NONCE_CHARS: usize = 8;
/// How far a wallet's clock may be ahead of ours (`issued-at` in the future) or behind it
/// (`issued-at` before the nonce was handed out).
pub const MAX_CLOCK_SKEW_SECS: i64 = 60;
/// How long a nonce lives by default (`siwe.nonce_ttl_secs`).
pub const DEFAULT_NONCE_TTL_SECS: i64 = 600;

const PREAMBLE: &str = " wants you to sign in with your Ethereum account:";

/// An Ethereum address (20 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// Parses `0x` and 40 hexadecimal digits that must be in their EIP-55 mixed-case checksum form.
    /// An all-lower-case or all-upper-case address carries no checksum: EIP-4361 requires the
    /// checksummed form (for externally owned accounts, the only ones signing in here), so it is
    /// refused too, with its own error.
    pub fn parse_checksummed(text: &str) -> Result<Address, SiweError> {
        let address = Self::parse_any_case(text)
            .ok_or(SiweError::Malformed { line: 2, what: "the address must be 0x and 40 hexadecimal digits" })?;
        let digits = &text[2..];
        if digits == &address.checksummed()[2..] {
            return Ok(address);
        }
        let has_lower = digits.bytes().any(|b| b.is_ascii_lowercase());
        let has_upper = digits.bytes().any(|b| b.is_ascii_uppercase());
        if has_lower && has_upper {
            Err(SiweError::AddressChecksumInvalid)
        } else {
            Err(SiweError::AddressNotChecksummed)
        }
    }

    /// `0x` and 40 hexadecimal digits in any case (the stored, lower-case form included).
    pub fn parse_any_case(text: &str) -> Option<Address> {
        let digits = text.strip_prefix("0x")?;
        if digits.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        for (i, pair) in digits.as_bytes().chunks(2).enumerate() {
            out[i] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Some(Address(out))
    }

    /// `0x` and the lower-case digits: the form addresses are stored and compared in.
    pub fn lower(&self) -> String {
        let mut s = String::with_capacity(42);
        s.push_str("0x");
        for b in self.0 {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 0xf) as usize] as char);
        }
        s
    }

    /// The EIP-55 mixed-case checksum form: a letter is upper case where the matching nibble of
    /// the Keccak-256 of the lower-case digits is 8 or more.
    pub fn checksummed(&self) -> String {
        let lower = self.lower();
        let hash = Keccak256::digest(&lower.as_bytes()[2..]);
        let mut s = String::with_capacity(42);
        s.push_str("0x");
        for (i, c) in lower[2..].chars().enumerate() {
            let nibble = if i % 2 == 0 { hash[i / 2] >> 4 } else { hash[i / 2] & 0xf };
            s.push(if c.is_ascii_alphabetic() && nibble >= 8 { c.to_ascii_uppercase() } else { c });
        }
        s
    }
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.checksummed())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A timestamp of the message, as written and as a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timestamp {
    pub text: String,
    pub at: OffsetDateTime,
}

impl Timestamp {
    fn parse(text: &str, line: usize, what: &'static str) -> Result<Timestamp, SiweError> {
        let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| SiweError::Malformed { line, what })?;
        Ok(Timestamp { text: text.to_owned(), at })
    }

    /// Seconds since the Unix epoch (rounded down).
    pub fn unix(&self) -> i64 {
        self.at.unix_timestamp()
    }
}

/// An EIP-4361 message, as parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiweMessage {
    /// The optional `scheme://` before the domain.
    pub scheme: Option<String>,
    /// The RFC 3986 authority asking for the signature (`host[:port]`).
    pub domain: String,
    pub address: Address,
    pub statement: Option<String>,
    pub uri: String,
    pub version: String,
    pub chain_id: u64,
    pub nonce: String,
    pub issued_at: Timestamp,
    pub expiration_time: Option<Timestamp>,
    pub not_before: Option<Timestamp>,
    pub request_id: Option<String>,
    pub resources: Vec<String>,
}

/// Why a message or signature is refused. Each has a stable code (answered to the caller and
/// audited) and a sentence fit to show a person; none repeats what was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SiweError {
    #[error("the message is longer than 8192 bytes")]
    MessageTooLong,
    #[error("the message is not an EIP-4361 message: line {line}: {what}")]
    Malformed { line: usize, what: &'static str },
    #[error("the address is not in its EIP-55 checksum form (mixed case): sign the checksummed address")]
    AddressNotChecksummed,
    #[error("the address's EIP-55 checksum is wrong (a mistyped or altered address)")]
    AddressChecksumInvalid,
    #[error("the message's version must be 1")]
    UnsupportedVersion,
    #[error("the message is for another site: its domain must be this server's host and port")]
    DomainMismatch,
    #[error("the message is for another site: its scheme must be this server's")]
    SchemeMismatch,
    #[error("the message's URI must be on this server's origin")]
    UriMismatch,
    #[error("chain id {0} is not accepted by this server")]
    ChainNotAllowed(u64),
    #[error("the message was issued in the future (check the device's clock)")]
    IssuedInFuture,
    #[error("the message was issued before its nonce was handed out")]
    IssuedBeforeNonce,
    #[error("the message has expired (its Expiration Time has passed)")]
    Expired,
    #[error("the message is not valid yet (its Not Before time is in the future)")]
    NotYetValid,
    #[error("the signature must be 65 bytes in hexadecimal (130 digits, 0x first)")]
    SignatureMalformed,
    #[error("the signature's recovery byte (v) must be 27, 28, 0 or 1")]
    SignatureRecoveryInvalid,
    #[error("the signature is not canonical (its s is in the upper half of the curve order)")]
    SignatureNotCanonical,
    #[error("the signature was not made by the message's address")]
    SignerMismatch,
}

impl SiweError {
    /// The stable code of the refusal.
    pub fn code(&self) -> &'static str {
        match self {
            SiweError::MessageTooLong => "message_too_long",
            SiweError::Malformed { .. } => "malformed_message",
            SiweError::AddressNotChecksummed => "address_not_checksummed",
            SiweError::AddressChecksumInvalid => "address_checksum_invalid",
            SiweError::UnsupportedVersion => "unsupported_version",
            SiweError::DomainMismatch => "domain_mismatch",
            SiweError::SchemeMismatch => "scheme_mismatch",
            SiweError::UriMismatch => "uri_mismatch",
            SiweError::ChainNotAllowed(_) => "chain_not_allowed",
            SiweError::IssuedInFuture => "issued_in_future",
            SiweError::IssuedBeforeNonce => "issued_before_nonce",
            SiweError::Expired => "message_expired",
            SiweError::NotYetValid => "message_not_yet_valid",
            SiweError::SignatureMalformed => "signature_malformed",
            SiweError::SignatureRecoveryInvalid => "signature_recovery_invalid",
            SiweError::SignatureNotCanonical => "signature_not_canonical",
            SiweError::SignerMismatch => "signature_mismatch",
        }
    }

    /// Is it about when the message may be used (rather than what it says)?
    pub fn is_about_time(&self) -> bool {
        matches!(
            self,
            SiweError::IssuedInFuture | SiweError::IssuedBeforeNonce | SiweError::Expired | SiweError::NotYetValid
        )
    }
}

/// Parses a message by the EIP-4361 ABNF: lines separated by LF (a CR anywhere is refused), the
/// fields in their fixed order, nothing after the last one (not even a line break).
pub fn parse_message(text: &str) -> Result<SiweMessage, SiweError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(SiweError::MessageTooLong);
    }
    if let Some(i) = text.find('\r') {
        let line = text[..i].matches('\n').count() + 1;
        return Err(SiweError::Malformed { line, what: "lines must end with LF alone (no CR)" });
    }
    let lines: Vec<&str> = text.split('\n').collect();
    let mut at = 0usize;
    let line = |i: usize| lines.get(i).copied();
    let missing = |i: usize, what: &'static str| SiweError::Malformed { line: i + 1, what };

    // `[ scheme "://" ] domain " wants you to sign in with your Ethereum account:"`
    let header = line(at).ok_or(missing(at, "the first line is missing"))?;
    let origin = header
        .strip_suffix(PREAMBLE)
        .ok_or(missing(at, "the first line must end with \" wants you to sign in with your Ethereum account:\""))?;
    let (scheme, domain) = match origin.split_once("://") {
        Some((scheme, domain)) => (Some(scheme), domain),
        None => (None, origin),
    };
    if let Some(s) = scheme
        && !is_scheme(s)
    {
        return Err(missing(at, "the scheme is not valid"));
    }
    if !is_authority(domain) {
        return Err(missing(at, "the domain must be an authority (host and optional port)"));
    }
    at += 1;

    let address_text = line(at).ok_or(missing(at, "the address is missing"))?;
    let address = Address::parse_checksummed(address_text)?;
    at += 1;

    if line(at) != Some("") {
        return Err(missing(at, "an empty line must follow the address"));
    }
    at += 1;
    // `[ statement LF ] LF`: with no statement, two empty lines follow the address.
    let statement = match line(at) {
        None => return Err(missing(at, "the message ends after the address")),
        Some("") => {
            at += 1;
            None
        }
        Some(s) => {
            if s.chars().any(char::is_control) {
                return Err(missing(at, "the statement may not contain control characters"));
            }
            at += 1;
            if line(at) != Some("") {
                return Err(missing(at, "an empty line must follow the statement"));
            }
            at += 1;
            Some(s.to_owned())
        }
    };

    let field = |i: usize, tag: &'static str, what: &'static str| -> Result<&str, SiweError> {
        line(i).and_then(|l| l.strip_prefix(tag)).ok_or(SiweError::Malformed { line: i + 1, what })
    };
    let uri = field(at, "URI: ", "expected \"URI: \" and a URI")?;
    if url::Url::parse(uri).is_err() || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(missing(at, "the URI is not valid"));
    }
    at += 1;
    let version = field(at, "Version: ", "expected \"Version: 1\"")?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(missing(at, "the version must be a number"));
    }
    at += 1;
    let chain = field(at, "Chain ID: ", "expected \"Chain ID: \" and a number")?;
    let chain_id = (!chain.is_empty() && chain.bytes().all(|b| b.is_ascii_digit()))
        .then(|| chain.parse::<u64>().ok())
        .flatten()
        .ok_or(missing(at, "the chain id must be a decimal number"))?;
    at += 1;
    let nonce = field(at, "Nonce: ", "expected \"Nonce: \" and the nonce")?;
    if !(MIN_NONCE_CHARS..=MAX_NONCE_CHARS).contains(&nonce.len()) || !nonce.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(missing(at, "the nonce must be 8 to 128 letters and digits"));
    }
    at += 1;
    let issued_at = Timestamp::parse(
        field(at, "Issued At: ", "expected \"Issued At: \" and an RFC 3339 time")?,
        at + 1,
        "the issue time must be an RFC 3339 date-time",
    )?;
    at += 1;

    // The optional fields, each at most once, in this order.
    let mut expiration_time = None;
    if let Some(t) = line(at).and_then(|l| l.strip_prefix("Expiration Time: ")) {
        expiration_time = Some(Timestamp::parse(t, at + 1, "the expiration time must be an RFC 3339 date-time")?);
        at += 1;
    }
    let mut not_before = None;
    if let Some(t) = line(at).and_then(|l| l.strip_prefix("Not Before: ")) {
        not_before = Some(Timestamp::parse(t, at + 1, "the not-before time must be an RFC 3339 date-time")?);
        at += 1;
    }
    let mut request_id = None;
    if let Some(r) = line(at).and_then(|l| l.strip_prefix("Request ID: ")) {
        if !r.chars().all(is_pchar) {
            return Err(missing(at, "the request id may hold only URI path characters"));
        }
        request_id = Some(r.to_owned());
        at += 1;
    }
    let mut resources = Vec::new();
    if line(at) == Some("Resources:") {
        at += 1;
        while let Some(l) = line(at) {
            let r = l.strip_prefix("- ").ok_or(missing(at, "each resource must be \"- \" and a URI"))?;
            if url::Url::parse(r).is_err() || r.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(missing(at, "a resource is not a valid URI"));
            }
            resources.push(r.to_owned());
            at += 1;
        }
    }
    if at < lines.len() {
        let what = if at + 1 == lines.len() && lines[at].is_empty() {
            "the message must not end with a line break"
        } else {
            "unexpected line (fields are in a fixed order, each at most once)"
        };
        return Err(missing(at, what));
    }
    Ok(SiweMessage {
        scheme: scheme.map(str::to_owned),
        domain: domain.to_owned(),
        address,
        statement,
        uri: uri.to_owned(),
        version: version.to_owned(),
        chain_id,
        nonce: nonce.to_owned(),
        issued_at,
        expiration_time,
        not_before,
        request_id,
        resources,
    })
}

/// `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`
fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// An RFC 3986 authority's characters, without user information (never used to sign in here): a
/// host (a name, an IPv4 address or a bracketed IPv6 one) and an optional port.
fn is_authority(s: &str) -> bool {
    !s.is_empty()
        && !s.contains('@')
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b':' | b'[' | b']'))
}

/// RFC 3986 `pchar`: unreserved, percent-encoded, sub-delims, `:` and `@`.
fn is_pchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~%!$&'()*+,;=:@".contains(c)
}

/// Who the messages must be addressed to: this server, from its issuer URL.
#[derive(Clone, Debug)]
pub struct Audience {
    issuer: url::Url,
}

impl Audience {
    /// `None` unless the issuer is an http(s) URL with a host.
    pub fn of_issuer(issuer: &str) -> Option<Audience> {
        let issuer = url::Url::parse(issuer).ok()?;
        (matches!(issuer.scheme(), "http" | "https") && issuer.host_str().is_some()).then_some(Audience { issuer })
    }

    /// The domain a message must name: the issuer's host and, unless it is the scheme's default,
    /// its port.
    pub fn domain(&self) -> String {
        let host = self.issuer.host_str().unwrap_or_default();
        match self.issuer.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        }
    }

    /// The issuer's origin (`scheme://host[:port]`): the URI a message names must be on it, and
    /// the browser's `Origin` of a sign-in must be it.
    pub fn origin(&self) -> String {
        self.issuer.origin().ascii_serialization()
    }

    fn domain_matches(&self, domain: &str) -> bool {
        // Parsed as the issuer's scheme would take it, so that case and a spelled-out default port
        // do not matter, and anything that is not just a host and port does not match.
        let Ok(u) = url::Url::parse(&format!("{}://{domain}/", self.issuer.scheme())) else { return false };
        u.username().is_empty()
            && u.password().is_none()
            && u.path() == "/"
            && u.query().is_none()
            && u.host_str() == self.issuer.host_str()
            && u.port_or_known_default() == self.issuer.port_or_known_default()
    }
}

/// What a sign-in asks of a message besides its signature and nonce: addressed to this server
/// (domain, scheme if given, URI on its origin), version 1, an allowed chain, and valid at `now` —
/// issued no later than [`MAX_CLOCK_SKEW_SECS`] ahead, not expired, not before its Not Before.
pub fn check_message(m: &SiweMessage, audience: &Audience, chain_ids: &[u64], now: UnixTime) -> Result<(), SiweError> {
    if m.version != "1" {
        return Err(SiweError::UnsupportedVersion);
    }
    if !audience.domain_matches(&m.domain) {
        return Err(SiweError::DomainMismatch);
    }
    if let Some(s) = &m.scheme
        && !s.eq_ignore_ascii_case(audience.issuer.scheme())
    {
        return Err(SiweError::SchemeMismatch);
    }
    let same_origin = url::Url::parse(&m.uri).is_ok_and(|u| u.origin() == audience.issuer.origin());
    if !same_origin {
        return Err(SiweError::UriMismatch);
    }
    if !chain_ids.contains(&m.chain_id) {
        return Err(SiweError::ChainNotAllowed(m.chain_id));
    }
    let now_at = OffsetDateTime::from_unix_timestamp(now).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    if m.issued_at.unix() > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(SiweError::IssuedInFuture);
    }
    if m.expiration_time.as_ref().is_some_and(|t| t.at <= now_at) {
        return Err(SiweError::Expired);
    }
    if m.not_before.as_ref().is_some_and(|t| t.at > now_at) {
        return Err(SiweError::NotYetValid);
    }
    Ok(())
}

/// The message must not have been issued before its nonce existed (beyond the clock skew): a
/// signature made before we handed the nonce out was not made for it.
pub fn check_issued_after_nonce(m: &SiweMessage, nonce_created_at: UnixTime) -> Result<(), SiweError> {
    if m.issued_at.unix() < nonce_created_at.saturating_sub(MAX_CLOCK_SKEW_SECS) {
        return Err(SiweError::IssuedBeforeNonce);
    }
    Ok(())
}

/// A `personal_sign` signature: 65 bytes (`r`, `s`, `v`) as 130 hexadecimal digits, `0x` first
/// (or not); `v` is 27 or 28 (or 0 or 1).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PersonalSignature {
    rs: [u8; 64],
    recovery: u8,
}

impl std::fmt::Debug for PersonalSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not secret, but bulky and never needed in a log line.
        f.write_str("PersonalSignature(…)")
    }
}

impl PersonalSignature {
    pub fn parse(text: &str) -> Result<PersonalSignature, SiweError> {
        let digits = text.strip_prefix("0x").unwrap_or(text);
        if digits.len() != 130 {
            return Err(SiweError::SignatureMalformed);
        }
        let mut bytes = [0u8; 65];
        for (i, pair) in digits.as_bytes().chunks(2).enumerate() {
            bytes[i] = (hex_value(pair[0]).ok_or(SiweError::SignatureMalformed)? << 4)
                | hex_value(pair[1]).ok_or(SiweError::SignatureMalformed)?;
        }
        let recovery = match bytes[64] {
            0 | 27 => 0,
            1 | 28 => 1,
            _ => return Err(SiweError::SignatureRecoveryInvalid),
        };
        let mut rs = [0u8; 64];
        rs.copy_from_slice(&bytes[..64]);
        Ok(PersonalSignature { rs, recovery })
    }

    /// The address whose key made this signature of `message` (EIP-191 version 0x45: Keccak-256
    /// of `"\x19Ethereum Signed Message:\n"`, the message's length in bytes in decimal, and the
    /// message's exact bytes).
    pub fn signer(&self, message: &str) -> Result<Address, SiweError> {
        let sig = Signature::from_slice(&self.rs).map_err(|_| SiweError::SignatureMalformed)?;
        // The other s of the pair verifies too (malleability); wallets give the low one.
        if sig.normalize_s() != sig {
            return Err(SiweError::SignatureNotCanonical);
        }
        let recovery = RecoveryId::from_byte(self.recovery).ok_or(SiweError::SignatureRecoveryInvalid)?;
        let key = VerifyingKey::recover_from_prehash(&personal_message_hash(message), &sig, recovery)
            .map_err(|_| SiweError::SignerMismatch)?;
        Ok(address_of(&key))
    }
}

/// EIP-191's hash of a `personal_sign` message.
pub fn personal_message_hash(message: &str) -> [u8; 32] {
    let mut h = Keccak256::new();
    h.update(format!("\x19Ethereum Signed Message:\n{}", message.len()).as_bytes());
    h.update(message.as_bytes());
    h.finalize().into()
}

/// The address of a public key: the last 20 bytes of the Keccak-256 of its uncompressed point.
pub fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_sec1_point(false);
    let hash = Keccak256::digest(&point.as_bytes()[1..]);
    let mut out = [0u8; 20];
    out.copy_from_slice(&hash[12..]);
    Address(out)
}

/// Checks a signed message end to end, pure: parsed, addressed to `audience`, on an allowed
/// chain, valid at `now`, and signed by its address. The nonce is the caller's to look up and spend.
pub fn verify(
    message: &str,
    signature: &str,
    audience: &Audience,
    chain_ids: &[u64],
    now: UnixTime,
) -> Result<SiweMessage, SiweError> {
    let m = parse_message(message)?;
    check_message(&m, audience, chain_ids, now)?;
    let signer = PersonalSignature::parse(signature)?.signer(message)?;
    if signer != m.address {
        return Err(SiweError::SignerMismatch);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::SigningKey;

    const NOW: UnixTime = 1_767_225_600; // 2026-01-01T00:00:00Z

    fn key(n: u8) -> SigningKey {
        SigningKey::from_slice(&[n; 32]).unwrap()
    }

    fn address(k: &SigningKey) -> Address {
        address_of(k.verifying_key())
    }

    fn sign(k: &SigningKey, message: &str) -> String {
        let (sig, rec) = k.sign_prehash_recoverable(&personal_message_hash(message));
        let mut out = String::from("0x");
        for b in sig.to_bytes().iter().chain(std::iter::once(&(27 + rec.to_byte()))) {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    fn message(address: &str, extra: &str) -> String {
        format!(
            "127.0.0.1:8080 wants you to sign in with your Ethereum account:\n{address}\n\nSign in to Bridgekeeper\n\n\
             URI: http://127.0.0.1:8080/login\nVersion: 1\nChain ID: 1\nNonce: abcdef0123456789\n\
             Issued At: 2026-01-01T00:00:00.000Z{extra}"
        )
    }

    fn audience() -> Audience {
        Audience::of_issuer("http://127.0.0.1:8080").unwrap()
    }

    #[test]
    fn eip55_examples_from_the_specification() {
        for a in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
            "0x52908400098527886E0F7030069857D2E4169EE7",
            "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
            "0xde709f2102306220921060314715629080e2fb77",
            "0x27b1fdb04752bbc536007a920d24acb045561c26",
        ] {
            let parsed = Address::parse_checksummed(a).unwrap_or_else(|e| panic!("{a}: {e}"));
            assert_eq!(parsed.checksummed(), a);
            assert_eq!(parsed.lower(), a.to_ascii_lowercase());
        }
    }

    #[test]
    fn addresses_without_or_with_a_wrong_checksum_are_refused() {
        let good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        assert_eq!(Address::parse_checksummed(&good.to_ascii_lowercase()), Err(SiweError::AddressNotChecksummed));
        let upper = format!("0x{}", good[2..].to_ascii_uppercase());
        assert_eq!(Address::parse_checksummed(&upper), Err(SiweError::AddressNotChecksummed));
        let flipped = "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        assert_eq!(Address::parse_checksummed(flipped), Err(SiweError::AddressChecksumInvalid));
        for bad in ["5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeA", "0xZZ"] {
            assert!(matches!(Address::parse_checksummed(bad), Err(SiweError::Malformed { line: 2, .. })), "{bad}");
        }
    }

    #[test]
    fn a_message_signed_by_its_address_verifies() {
        let k = key(7);
        let m = message(&address(&k).checksummed(), "");
        let parsed = verify(&m, &sign(&k, &m), &audience(), &[1], NOW).unwrap();
        assert_eq!(parsed.address, address(&k));
        assert_eq!(parsed.statement.as_deref(), Some("Sign in to Bridgekeeper"));
        assert_eq!((parsed.chain_id, parsed.nonce.as_str()), (1, "abcdef0123456789"));
        // v as 0/1 too, and without 0x.
        let sig = sign(&k, &m);
        let v = u8::from_str_radix(&sig[130..], 16).unwrap() - 27;
        let raw = format!("{}{v:02x}", &sig[2..130]);
        assert!(verify(&m, &raw, &audience(), &[1], NOW).is_ok());
    }

    #[test]
    fn a_known_vector_from_the_siwe_reference() {
        // The EIP-4361 reference implementation's example message and signature.
        let m = "localhost:4361 wants you to sign in with your Ethereum account:\n\
                 0x6Da01670d8fc844e736095918bbE11fE8D564163\n\nSIWE Notepad Example\n\nURI: http://localhost:4361\n\
                 Version: 1\nChain ID: 1\nNonce: kEWepMt9knR6lWJ6A\nIssued At: 2021-12-07T18:28:18.807Z";
        let sig = "6228b3ecd7bf2df018183aeab6b6f1db1e9f4e3cbe24560404112e25363540eb679934908143224d746bbb5e1aa65ab435684081f4dbb74a0fec57f98f40f5051c";
        let signer = PersonalSignature::parse(sig).unwrap().signer(m).unwrap();
        assert_eq!(signer.checksummed(), "0x6Da01670d8fc844e736095918bbE11fE8D564163");
        let a = Audience::of_issuer("http://localhost:4361").unwrap();
        assert!(verify(m, sig, &a, &[1], 1_638_901_700).is_ok());
    }

    #[test]
    fn another_keys_signature_is_refused() {
        let (k, other) = (key(7), key(8));
        let m = message(&address(&k).checksummed(), "");
        assert_eq!(verify(&m, &sign(&other, &m), &audience(), &[1], NOW), Err(SiweError::SignerMismatch));
        // A signature of another message by the right key.
        let other_message = m.replace("Sign in", "Sign In");
        assert_eq!(verify(&m, &sign(&k, &other_message), &audience(), &[1], NOW), Err(SiweError::SignerMismatch));
    }

    #[test]
    fn signatures_are_65_bytes_with_v_27_28_0_or_1_and_low_s() {
        let k = key(7);
        let m = message(&address(&k).checksummed(), "");
        let sig = sign(&k, &m);
        assert_eq!(PersonalSignature::parse(&sig[..sig.len() - 2]), Err(SiweError::SignatureMalformed));
        assert_eq!(PersonalSignature::parse(&format!("{sig}00")), Err(SiweError::SignatureMalformed));
        assert_eq!(PersonalSignature::parse(&sig.replace('a', "g")).err(), Some(SiweError::SignatureMalformed));
        for v in ["1d", "02", "ff", "36"] {
            let s = format!("{}{v}", &sig[..130]);
            assert_eq!(PersonalSignature::parse(&s), Err(SiweError::SignatureRecoveryInvalid), "{v}");
        }
        // The high-s twin of the signature (n - s, v flipped) is refused.
        let parsed = PersonalSignature::parse(&sig).unwrap();
        let low = Signature::from_slice(&parsed.rs).unwrap();
        let n_minus_s = -*low.s();
        let high = Signature::from_scalars(low.r().to_bytes(), n_minus_s.to_bytes()).unwrap();
        let mut hex_sig = String::from("0x");
        for b in high.to_bytes().iter() {
            hex_sig.push_str(&format!("{b:02x}"));
        }
        hex_sig.push_str(if parsed.recovery == 0 { "1c" } else { "1b" });
        assert_eq!(PersonalSignature::parse(&hex_sig).unwrap().signer(&m), Err(SiweError::SignatureNotCanonical));
    }

    #[test]
    fn the_message_must_be_for_this_server() {
        let a = address(&key(7)).checksummed();
        let ok = message(&a, "");
        let check = |m: &str| check_message(&parse_message(m).unwrap(), &audience(), &[1, 137], NOW);
        assert_eq!(check(&ok), Ok(()));
        assert_eq!(check(&ok.replace("127.0.0.1:8080 wants", "evil.example wants")), Err(SiweError::DomainMismatch));
        assert_eq!(check(&ok.replace("127.0.0.1:8080 wants", "127.0.0.1:8081 wants")), Err(SiweError::DomainMismatch));
        assert_eq!(check(&ok.replace("127.0.0.1:8080 wants", "http://127.0.0.1:8080 wants")), Ok(()));
        assert_eq!(
            check(&ok.replace("127.0.0.1:8080 wants", "https://127.0.0.1:8080 wants")),
            Err(SiweError::SchemeMismatch)
        );
        assert_eq!(
            check(&ok.replace("URI: http://127.0.0.1:8080/", "URI: http://evil.example/")),
            Err(SiweError::UriMismatch)
        );
        assert_eq!(check(&ok.replace("URI: http://", "URI: https://")), Err(SiweError::UriMismatch));
        assert_eq!(check(&ok.replace("Chain ID: 1\n", "Chain ID: 137\n")), Ok(()));
        assert_eq!(check(&ok.replace("Chain ID: 1\n", "Chain ID: 5\n")), Err(SiweError::ChainNotAllowed(5)));
        assert_eq!(check(&ok.replace("Version: 1", "Version: 2")), Err(SiweError::UnsupportedVersion));
        // A default port spelled out, and the host's case, do not matter.
        let https = Audience::of_issuer("https://Auth.Example.com").unwrap();
        assert_eq!(https.domain(), "auth.example.com");
        assert_eq!(https.origin(), "https://auth.example.com");
        assert!(https.domain_matches("auth.example.com:443"));
        assert!(https.domain_matches("AUTH.example.com"));
        assert!(!https.domain_matches("auth.example.com:8443"));
        assert!(!https.domain_matches("auth.example.com.evil.example"));
    }

    #[test]
    fn times_are_respected() {
        let a = address(&key(7)).checksummed();
        let check = |extra: &str, iat: &str| {
            let m = message(&a, extra).replace("2026-01-01T00:00:00.000Z", iat);
            check_message(&parse_message(&m).unwrap(), &audience(), &[1], NOW)
        };
        assert_eq!(check("", "2026-01-01T00:00:59Z"), Ok(()), "within the skew");
        assert_eq!(check("", "2026-01-01T00:01:01Z"), Err(SiweError::IssuedInFuture));
        assert_eq!(check("\nExpiration Time: 2026-01-01T00:00:00Z", "2025-12-31T23:59:00Z"), Err(SiweError::Expired));
        assert_eq!(check("\nExpiration Time: 2026-01-01T00:00:01Z", "2025-12-31T23:59:00Z"), Ok(()));
        assert_eq!(check("\nNot Before: 2026-01-01T00:00:01Z", "2025-12-31T23:59:00Z"), Err(SiweError::NotYetValid));
        assert_eq!(check("\nNot Before: 2026-01-01T00:00:00+00:00", "2025-12-31T23:59:00Z"), Ok(()));
        let m = parse_message(&message(&a, "")).unwrap();
        assert_eq!(check_issued_after_nonce(&m, NOW + 60), Ok(()));
        assert_eq!(check_issued_after_nonce(&m, NOW + 61), Err(SiweError::IssuedBeforeNonce));
    }

    #[test]
    fn the_grammar_is_strict() {
        let a = address(&key(7)).checksummed();
        let ok = message(
            &a,
            "\nExpiration Time: 2026-01-02T00:00:00Z\nNot Before: 2025-12-31T00:00:00Z\nRequest ID: req-1\nResources:\n- https://example.com/a\n- ipfs://bafy",
        );
        let m = parse_message(&ok).unwrap();
        assert_eq!(m.request_id.as_deref(), Some("req-1"));
        assert_eq!(m.resources, vec!["https://example.com/a", "ipfs://bafy"]);
        // No statement: two empty lines after the address.
        let bare = ok.replace("\nSign in to Bridgekeeper\n", "\n");
        assert_eq!(parse_message(&bare).unwrap().statement, None);
        let malformed = |m: &str| matches!(parse_message(m), Err(SiweError::Malformed { .. }));
        for bad in [
            format!("{ok}\n"),
            ok.replace('\n', "\r\n"),
            ok.replace(" wants you to sign in", " would like you to sign in"),
            ok.replace("Nonce: abcdef0123456789", "Nonce: abc"),
            ok.replace("Nonce: abcdef0123456789", "Nonce: abcdef01-3456789"),
            ok.replace("Chain ID: 1", "Chain ID: one"),
            ok.replace("Issued At: 2026-01-01T00:00:00.000Z", "Issued At: yesterday"),
            ok.replace("Request ID: req-1\n", "Request ID: req 1\n"),
            ok.replace(
                "Expiration Time: 2026-01-02T00:00:00Z\nNot Before: 2025-12-31T00:00:00Z",
                "Not Before: 2025-12-31T00:00:00Z\nExpiration Time: 2026-01-02T00:00:00Z",
            ),
            ok.replace("\n\nURI", "\nURI"),
            ok.replace("Sign in to Bridgekeeper", "Sign in\u{7}"),
            ok.replace("127.0.0.1:8080 wants", "user@127.0.0.1:8080 wants"),
            ok.replace("127.0.0.1:8080 wants", "127.0.0.1:8080/path wants"),
            format!("{ok}\nExtra: field"),
        ] {
            assert!(malformed(&bad), "accepted: {bad:?}");
        }
        assert_eq!(parse_message(&"x".repeat(MAX_MESSAGE_BYTES + 1)), Err(SiweError::MessageTooLong));
    }
}
