#![no_main]
//! Token parsing (README "Token format"), with the default prefix `gp_`,
//! an empty prefix and two others:
//! - `TokenFormat::parse` never panics and agrees with a reference parser
//!   written from the README (same accept/reject, same lookup key and
//!   digest);
//! - an accepted secret is 1..=255 printable ASCII characters, and one
//!   that carries the configured prefix has 40 alphanumerics and their
//!   crc32b (`gatepass::token::checksum`);
//! - `<id>|<secret>` round-trips to `TokenKey::Id(id)` with the digest of
//!   the secret, both for secrets from `generate_secret()` and for secrets
//!   built from the input the way the generator builds them.

use std::sync::OnceLock;

use gatepass::token::{IssuedToken, Secret, TokenDigest, TokenFormat, TokenKey, checksum};
use gatepass_fuzz::reference::{self, Key};
use libfuzzer_sys::fuzz_target;

const PREFIXES: [&str; 4] = ["gp_", "", "acme_live-", "tok"];

struct Format {
    prefix: &'static str,
    format: TokenFormat,
    /// Secrets from `generate_secret()`, made once per process.
    generated: Vec<Secret>,
}

fn formats() -> &'static [Format] {
    static FORMATS: OnceLock<Vec<Format>> = OnceLock::new();
    FORMATS.get_or_init(|| {
        PREFIXES
            .iter()
            .map(|&prefix| {
                let format = if prefix == "gp_" {
                    TokenFormat::default()
                } else {
                    TokenFormat::new(prefix).expect("valid prefix")
                };
                assert_eq!(format.prefix(), prefix);
                let generated = (0..16).map(|_| format.generate_secret()).collect();
                Format {
                    prefix,
                    format,
                    generated,
                }
            })
            .collect()
    })
}

fuzz_target!(
    init: {
        gatepass_fuzz::seeds::write_if_asked("token_parse");
    },
    |data: &[u8]| {
        for format in formats() {
            check_parse(format, data);
            check_round_trip(format, data);
        }
    }
);

fn check_parse(format: &Format, data: &[u8]) {
    let got = format.format.parse(data);
    let want = reference::parse_token(format.prefix, data);
    match (&got, &want) {
        (Ok(parsed), Some(Key::Id(id, secret))) => {
            assert_eq!(parsed.key, TokenKey::Id(*id), "prefix {:?} {data:?}", format.prefix);
            assert_eq!(parsed.digest, TokenDigest::of(secret), "prefix {:?} {data:?}", format.prefix);
        }
        (Ok(parsed), Some(Key::Digest(secret))) => {
            let digest = TokenDigest::of(secret);
            assert_eq!(parsed.key, TokenKey::Digest(digest), "prefix {:?} {data:?}", format.prefix);
            assert_eq!(parsed.digest, digest, "prefix {:?} {data:?}", format.prefix);
        }
        (Err(_), None) => {}
        _ => panic!(
            "prefix {:?}: gatepass says {got:?}, the reference {want:?}, for {data:?}",
            format.prefix
        ),
    }
    if got.is_ok() {
        // The README's promises, spelled out again on their own.
        let secret = match data.iter().position(|&b| b == b'|') {
            Some(bar) => &data[bar + 1..],
            None => data,
        };
        assert!(
            (1..=255).contains(&secret.len()) && secret.iter().all(u8::is_ascii_graphic),
            "accepted secret is not 1..=255 printable ASCII: {data:?}"
        );
        if let Some(body) = secret
            .strip_prefix(format.prefix.as_bytes())
            .filter(|_| !format.prefix.is_empty())
        {
            assert_eq!(body.len(), 48, "prefixed secret of the wrong length: {data:?}");
            assert_eq!(
                &body[40..],
                checksum(&body[..40]).as_bytes(),
                "prefixed secret without a valid checksum accepted: {data:?}"
            );
        }
    }
}

fn check_round_trip(format: &Format, data: &[u8]) {
    let seed = data
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let id = (seed >> 1) as i64;
    let pick = (seed % 16) as usize;

    // A secret of the generator.
    let secret = &format.generated[pick];
    let plain = IssuedToken::new(id, secret.clone()).expose();
    let parsed = format
        .format
        .parse(plain.as_bytes())
        .unwrap_or_else(|e| panic!("generated token {id}|… rejected: {e}"));
    assert_eq!(parsed.key, TokenKey::Id(id));
    assert_eq!(parsed.digest, secret.digest());

    // A secret built from the input as the generator builds one.
    const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let entropy: Vec<u8> = (0..40)
        .map(|i| {
            let byte = data.get(i).copied().unwrap_or(i as u8);
            ALPHANUMERIC[usize::from(byte) % ALPHANUMERIC.len()]
        })
        .collect();
    let mut built = format.prefix.as_bytes().to_vec();
    built.extend_from_slice(&entropy);
    built.extend_from_slice(checksum(&entropy).as_bytes());
    let token = [format!("{id}|").as_bytes(), &built].concat();
    let parsed = format
        .format
        .parse(&token)
        .unwrap_or_else(|e| panic!("well-formed token {:?} rejected: {e}", String::from_utf8_lossy(&token)));
    assert_eq!(parsed.key, TokenKey::Id(id));
    assert_eq!(parsed.digest, TokenDigest::of(&built));
    // Without `<id>|`: looked up by the digest of the secret.
    let parsed = format.format.parse(&built).expect("secret alone is well formed");
    assert_eq!(parsed.key, TokenKey::Digest(TokenDigest::of(&built)));
}
