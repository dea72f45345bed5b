//! The token format (SPEC §2): parse, checksum, generate, digest.
//!
//! Pure and allocation-free on the parse path, so it can sit on every check
//! and be fuzzed. The secret never leaves this module except through
//! [`IssuedToken::expose`], which only `token issue` calls.

use std::fmt;

use rand::{Rng, TryRngCore, distr::Alphanumeric, rngs::OsRng};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// Characters of entropy in a generated secret.
pub const ENTROPY_LEN: usize = 40;
/// Hex characters of the crc32b checksum that follows the entropy.
pub const CHECKSUM_LEN: usize = 8;
/// Longest secret accepted at all; anything longer is junk and is rejected
/// before it is hashed.
pub const MAX_SECRET_LEN: usize = 255;
/// Longest configurable prefix.
pub const MAX_PREFIX_LEN: usize = 32;

/// SHA-256 of a token's secret: the only form in which a secret is stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(secret: &[u8]) -> Self {
        Self(Sha256::digest(secret).into())
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, as Redis keys, change payloads and SQLite triggers
    /// write digests.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        self.0
            .iter()
            .fold(String::with_capacity(64), |mut out, byte| {
                let _ = write!(out, "{byte:02x}");
                out
            })
    }

    /// The digest written as 64 hex digits (either case), or `None`.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// Constant-time comparison, so timing does not reveal how much of a
    /// guessed secret was right.
    pub fn matches(&self, other: &TokenDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

/// How a presented token is found in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKey {
    /// `<id>|<secret>`: look up the row by id, then compare digests.
    Id(i64),
    /// A legacy Sanctum token without `<id>|`: look up by digest.
    Digest(TokenDigest),
}

/// A well-formed token as presented by a caller. Holds only the digest of
/// the secret, never the secret itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresentedToken {
    pub key: TokenKey,
    pub digest: TokenDigest,
}

/// Why a presented token is malformed. Kept coarse on purpose: the caller
/// learns only `malformed_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedToken {
    #[error("token id is not a positive decimal integer that fits in 64 bits")]
    BadId,
    #[error("token secret is empty, too long or contains characters outside printable ASCII")]
    BadSecret,
    #[error("token carries the configured prefix but not 40 characters and a checksum")]
    BadShape,
    #[error("token checksum does not match")]
    BadChecksum,
}

/// The configured token shape: the prefix generated tokens carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFormat {
    prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token prefix must be at most {MAX_PREFIX_LEN} characters from [A-Za-z0-9_-]")]
pub struct InvalidPrefix;

impl TokenFormat {
    pub fn new(prefix: &str) -> Result<Self, InvalidPrefix> {
        let valid = prefix.len() <= MAX_PREFIX_LEN
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(InvalidPrefix);
        }
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Parses a token as Laravel Sanctum does: `<id>|<secret>` is looked up
    /// by id, anything without `|` by the digest of the whole string.
    pub fn parse(&self, token: &[u8]) -> Result<PresentedToken, MalformedToken> {
        match token.iter().position(|&b| b == b'|') {
            Some(bar) => {
                let id = parse_id(&token[..bar])?;
                let secret = &token[bar + 1..];
                self.check_secret(secret)?;
                Ok(PresentedToken {
                    key: TokenKey::Id(id),
                    digest: TokenDigest::of(secret),
                })
            }
            None => {
                self.check_secret(token)?;
                let digest = TokenDigest::of(token);
                Ok(PresentedToken {
                    key: TokenKey::Digest(digest),
                    digest,
                })
            }
        }
    }

    /// Rejects junk without a lookup. A secret that carries our prefix, or
    /// has exactly the generated length with a hex tail, must checksum;
    /// anything else is an older Sanctum secret and only needs to be sane.
    fn check_secret(&self, secret: &[u8]) -> Result<(), MalformedToken> {
        if secret.is_empty()
            || secret.len() > MAX_SECRET_LEN
            || !secret.iter().all(|b| b.is_ascii_graphic())
        {
            return Err(MalformedToken::BadSecret);
        }
        let generated_len = ENTROPY_LEN + CHECKSUM_LEN;
        if !self.prefix.is_empty()
            && let Some(body) = secret.strip_prefix(self.prefix.as_bytes())
        {
            if body.len() != generated_len || !looks_generated(body) {
                return Err(MalformedToken::BadShape);
            }
            return verify_checksum(body);
        }
        if secret.len() == generated_len && looks_generated(secret) {
            return verify_checksum(secret);
        }
        Ok(())
    }

    /// Generates a new secret: prefix, 40 characters from the OS CSPRNG and
    /// the crc32b of those characters.
    pub fn generate_secret(&self) -> Secret {
        let mut rng = OsRng.unwrap_err();
        let entropy: String = (0..ENTROPY_LEN)
            .map(|_| char::from(rng.sample(Alphanumeric)))
            .collect();
        let checksum = checksum(entropy.as_bytes());
        Secret(format!("{}{entropy}{checksum}", self.prefix))
    }
}

impl Default for TokenFormat {
    fn default() -> Self {
        Self {
            prefix: "gp_".to_owned(),
        }
    }
}

/// Ids are plain decimal digits, as a database id prints: no sign, no
/// leading `+`, no non-ASCII digits, and they fit in `i64`.
fn parse_id(digits: &[u8]) -> Result<i64, MalformedToken> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(MalformedToken::BadId);
    }
    digits
        .iter()
        .try_fold(0i64, |acc, &d| {
            acc.checked_mul(10)?.checked_add(i64::from(d - b'0'))
        })
        .ok_or(MalformedToken::BadId)
}

fn looks_generated(body: &[u8]) -> bool {
    let (entropy, tail) = body.split_at(ENTROPY_LEN);
    entropy.iter().all(u8::is_ascii_alphanumeric)
        && tail
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// Compares without formatting: this runs on every check.
fn verify_checksum(body: &[u8]) -> Result<(), MalformedToken> {
    let (entropy, tail) = body.split_at(ENTROPY_LEN);
    let stated = tail.iter().try_fold(0u32, |acc, &digit| {
        let value = (digit as char).to_digit(16)?;
        Some(acc << 4 | value)
    });
    if stated == Some(crc32fast::hash(entropy)) {
        Ok(())
    } else {
        Err(MalformedToken::BadChecksum)
    }
}

/// PHP's `hash('crc32b', …)`: standard CRC-32, 8 lowercase hex characters.
pub fn checksum(entropy: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(entropy))
}

/// A secret in plain text. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn digest(&self) -> TokenDigest {
        TokenDigest::of(self.0.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A freshly issued token, `<id>|<secret>`: the only time gatepass holds a
/// secret in plain text.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub id: i64,
    secret: Secret,
}

impl IssuedToken {
    pub fn new(id: i64, secret: Secret) -> Self {
        Self { id, secret }
    }

    /// The plain-text token to hand to the caller, once.
    pub fn expose(&self) -> String {
        format!("{}|{}", self.id, self.secret.0)
    }
}

impl fmt::Display for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|<redacted>", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn format() -> TokenFormat {
        TokenFormat::default()
    }

    #[test]
    fn crc32b_matches_php() {
        // PHP's crc32b is zlib's CRC-32: python3 -c "import zlib; print('%08x' % zlib.crc32(b'...'))"
        assert_eq!(
            checksum(b"The quick brown fox jumped over the lazy dog."),
            "82a34642"
        );
        assert_eq!(checksum(b""), "00000000");
    }

    #[test]
    fn generated_secret_has_prefix_entropy_and_checksum() {
        let secret = format().generate_secret();
        let plain = &secret.0;
        assert!(plain.starts_with("gp_"));
        assert_eq!(plain.len(), 3 + ENTROPY_LEN + CHECKSUM_LEN);
        let body = &plain.as_bytes()[3..];
        assert_eq!(verify_checksum(body), Ok(()));
    }

    #[test]
    fn id_form_is_looked_up_by_id_with_digest_of_secret_only() {
        let secret = format().generate_secret();
        let token = IssuedToken::new(42, secret.clone()).expose();
        let parsed = format().parse(token.as_bytes()).unwrap();
        assert_eq!(parsed.key, TokenKey::Id(42));
        assert_eq!(parsed.digest, secret.digest());
    }

    #[test]
    fn legacy_sanctum_token_without_checksum_is_accepted() {
        let parsed = format()
            .parse(b"7|abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN")
            .unwrap();
        assert_eq!(parsed.key, TokenKey::Id(7));
    }

    #[test]
    fn token_without_id_is_looked_up_by_digest() {
        let parsed = format()
            .parse(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN")
            .unwrap();
        let digest = TokenDigest::of(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN");
        assert_eq!(parsed.key, TokenKey::Digest(digest));
    }

    #[test]
    fn wrong_checksum_is_malformed() {
        let secret = format().generate_secret();
        let mut plain = secret.0.clone().into_bytes();
        let last = plain.len() - 1;
        plain[last] = if plain[last] == b'0' { b'1' } else { b'0' };
        let token = [b"1|".as_slice(), &plain].concat();
        assert_eq!(format().parse(&token), Err(MalformedToken::BadChecksum));
    }

    #[test]
    fn prefixed_secret_of_wrong_length_is_malformed() {
        assert_eq!(format().parse(b"1|gp_short"), Err(MalformedToken::BadShape));
    }

    #[test]
    fn bad_ids_are_malformed() {
        for id in [
            "",
            "-1",
            "+1",
            " 1",
            "1 ",
            "9223372036854775808",
            "99999999999999999999",
            "１",
            "٣",
            "0x1",
        ] {
            let token = format!("{id}|abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN");
            assert_eq!(
                format().parse(token.as_bytes()),
                Err(MalformedToken::BadId),
                "{id:?}"
            );
        }
        assert!(
            format()
                .parse(b"9223372036854775807|abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN")
                .is_ok()
        );
    }

    #[test]
    fn empty_huge_and_non_ascii_secrets_are_malformed() {
        let huge = format!("1|{}", "a".repeat(64 * 1024));
        for token in [
            "1|".as_bytes(),
            huge.as_bytes(),
            "1|sécret".as_bytes(),
            b"1|with space",
            b"1|\xff\xfe",
            b"",
        ] {
            assert_eq!(
                format().parse(token),
                Err(MalformedToken::BadSecret),
                "{token:?}"
            );
        }
    }

    #[test]
    fn prefix_is_validated() {
        assert!(TokenFormat::new("").is_ok());
        assert!(TokenFormat::new("acme_live-").is_ok());
        assert!(TokenFormat::new("a|b").is_err());
        assert!(TokenFormat::new(&"x".repeat(33)).is_err());
    }

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let secret = format().generate_secret();
        let issued = IssuedToken::new(5, secret.clone());
        let plain = secret.0.clone();
        for shown in [
            format!("{secret:?}"),
            format!("{issued:?}"),
            format!("{issued}"),
            format!("{:?}", secret.digest()),
        ] {
            assert!(!shown.contains(&plain[3..]), "{shown}");
        }
    }

    proptest! {
        #[test]
        fn generated_tokens_round_trip(id in 1i64..=i64::MAX, prefix in "[A-Za-z0-9_]{0,8}") {
            let format = TokenFormat::new(&prefix).unwrap();
            let secret = format.generate_secret();
            let token = IssuedToken::new(id, secret.clone()).expose();
            let parsed = format.parse(token.as_bytes()).unwrap();
            prop_assert_eq!(parsed.key, TokenKey::Id(id));
            prop_assert_eq!(parsed.digest, secret.digest());
        }

        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = format().parse(&bytes);
        }

        #[test]
        fn parsing_text_never_panics(text in "\\PC{0,300}") {
            let _ = format().parse(text.as_bytes());
        }

        #[test]
        fn signed_or_overflowing_ids_are_malformed(id in "[+-][0-9]{1,5}|[1-9][0-9]{19,25}") {
            let token = format!("{id}|abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN");
            prop_assert_eq!(format().parse(token.as_bytes()), Err(MalformedToken::BadId));
        }
    }
}
