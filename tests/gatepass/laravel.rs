//! Laravel Sanctum's tokens against a real PHP with Laravel's own
//! `Str::random` (`tests/gatepass/php/sanctum_tokens.php`, written from
//! Sanctum's documented `createToken` and `findToken`): gatepass reads every
//! token Sanctum issues as Laravel does, and Laravel accepts every token
//! gatepass issues. Needs `php` and Debian's `php-laravel-framework`;
//! `scripts/test` installs them, and without them these tests fail.

use std::io::Write;
use std::process::{Command, Stdio};

use gatepass::token::{IssuedToken, TokenFormat, TokenKey};

const PREFIXES: [&str; 3] = ["", "gp_", "acme_live-"];

fn php(args: &[&str], stdin: &str) -> Vec<serde_json::Value> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/gatepass/php/sanctum_tokens.php"
    );
    let mut child = Command::new("php")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("php runs (scripts/test installs php-cli and php-laravel-framework)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "php {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

fn text<'a>(value: &'a serde_json::Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {value}"))
}

#[test]
fn tokens_laravel_issues_are_read_as_laravel_reads_them() {
    for prefix in PREFIXES {
        let format = TokenFormat::new(prefix).unwrap();
        let issued = php(&["issue", prefix, "25"], "");
        assert_eq!(issued.len(), 25);
        for token in &issued {
            for (secret, stored) in [("v4", "v4_sha256"), ("v2", "v2_sha256")] {
                let (secret, stored) = (text(token, secret), text(token, stored));
                // createToken hands out "<id>|<plain>": found by id.
                let presented = format
                    .parse(format!("41|{secret}").as_bytes())
                    .unwrap_or_else(|e| panic!("{prefix:?} {secret}: {e:?}"));
                assert_eq!(presented.key, TokenKey::Id(41));
                assert_eq!(presented.digest.to_hex(), stored, "{secret}");
                // Without "<id>|", findToken looks the hash up.
                let presented = format.parse(secret.as_bytes()).unwrap();
                assert_eq!(presented.key, TokenKey::Digest(presented.digest));
                assert_eq!(presented.digest.to_hex(), stored, "{secret}");
            }
            // A v4 token whose checksum was tampered with: Laravel finds no
            // row with its hash; gatepass rejects it before any lookup.
            let v4 = text(token, "v4");
            let last = v4.chars().last().unwrap();
            let flipped = if last == '0' { '1' } else { '0' };
            let tampered = format!("41|{}{flipped}", &v4[..v4.len() - 1]);
            assert!(format.parse(tampered.as_bytes()).is_err(), "{tampered}");
        }
    }
}

#[test]
fn tokens_gatepass_issues_verify_in_laravel() {
    for prefix in PREFIXES {
        let format = TokenFormat::new(prefix).unwrap();
        let mut expected = Vec::new();
        let mut lines = String::new();
        for id in 1..=20 {
            let secret = format.generate_secret();
            expected.push((id, secret.digest().to_hex()));
            lines.push_str(&IssuedToken::new(id, secret).expose());
            lines.push('\n');
        }
        let verified = php(&["verify", prefix], &lines);
        assert_eq!(verified.len(), expected.len());
        for ((id, digest), laravel) in expected.iter().zip(&verified) {
            assert_eq!(laravel["id"], *id, "{laravel}");
            assert_eq!(text(laravel, "sha256"), digest, "{laravel}");
            assert_eq!(laravel["has_prefix"], true, "{laravel}");
            assert_eq!(laravel["checksum_ok"], true, "{laravel}");
        }
    }
}
