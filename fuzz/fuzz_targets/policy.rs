#![no_main]
//! Route policies (README "Route policy"): `Policy::parse` and
//! `Policy::requirements_for(method, host, path)`.
//! - nothing panics, whatever the policy file or the request bytes;
//! - with a first rule `path_prefix = "/admin/"` → `require_all =
//!   ["admin"]` (and, in a second policy, `path = "/admin/**"`), every
//!   path whose normalized form starts with `/admin/` requires `admin`,
//!   also with non-UTF-8 bytes (ones that occur in no UTF-8 text: C0, C1,
//!   F5..FF) inserted into it wherever the result, as sent or with those
//!   bytes dropped, still normalizes under `/admin/` (mode 0, and mode 1
//!   for any method and host);
//! - requirements for a request with unreadable bytes are at least those
//!   of the request an upstream that drops those bytes reads (mode 1);
//! - a policy file either fails to parse with a one-line error or
//!   answers every request (mode 2).
//!
//! Input: a mode byte (% 3). Mode 0: a count (% 8) of insertions, that
//! many (position, byte) pairs, then the path. Mode 1: method, host and
//! path separated by NUL. Mode 2: the policy file (lossy UTF-8).

use std::sync::OnceLock;

use gatepass::model::parse_ability_list;
use gatepass::decision::policy::{Policy, normalize_path, readable};
use gatepass::model::{Abilities, Requirements};
use libfuzzer_sys::fuzz_target;

const PREFIX_POLICY: &str = r#"
[[rule]]
path_prefix = "/admin/"
require_all = ["admin"]

[[rule]]
path = "/orders/*/lines"
require_all = ["orders:read", "lines:read"]

[[rule]]
host = "*.internal"
methods = ["DELETE"]
path_prefix = "/orders/"
require_all = ["orders:delete"]

[[rule]]
path_prefix = "/orders/"
require_any = ["orders:read", "orders:write"]

[default]
require_all = ["basic"]
"#;

const GLOB_POLICY: &str = r#"
[[rule]]
path = "/admin/**"
require_all = ["admin"]

[[rule]]
host = "api.internal"
methods = ["get", "HEAD"]
path = "/*/v1/**"
require_any = ["v1"]

[[rule]]
path_prefix = "/orders/"
require_all = ["orders:read"]
"#;

/// Bytes that occur in no UTF-8 text.
const NOT_UTF8: [u8; 13] = [
    0xc0, 0xc1, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
];

struct Fixed {
    policies: [Policy; 2],
    /// Everything the policies ask for except `admin`.
    all_but_admin: Abilities,
    with_admin: Abilities,
    held: Vec<Abilities>,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let abilities = |list: &str| Abilities::new(parse_ability_list(list).expect("abilities"));
        let everything = "basic,orders:*,lines:read,v1,other";
        Fixed {
            policies: [
                Policy::parse(PREFIX_POLICY).expect("prefix policy"),
                Policy::parse(GLOB_POLICY).expect("glob policy"),
            ],
            all_but_admin: abilities(everything),
            with_admin: abilities(&format!("{everything},admin")),
            held: [
                "",
                "basic",
                "admin,basic",
                "orders:read,basic",
                "orders:delete,orders:read,basic",
                "orders:read,lines:read,basic",
                "orders:write",
                "v1,orders:read",
                "*",
            ]
            .map(abilities)
            .into(),
        }
    })
}

fuzz_target!(
    init: {
        gatepass_fuzz::seeds::write_if_asked("policy");
    },
    |data: &[u8]| {
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        match mode % 3 {
            0 => insertions(rest),
            1 => request(rest),
            _ => file(rest),
        }
    }
);

fn requires_admin(requirements: &Requirements) -> bool {
    let fixed = fixed();
    !requirements.satisfied_by(&fixed.all_but_admin) && requirements.satisfied_by(&fixed.with_admin)
}

fn shown(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
        + &format!(" (bytes {})", bytes.escape_ascii())
}

fn check_admin(method: &[u8], host: &[u8], path: &[u8], original: &[u8]) {
    for (which, policy) in fixed().policies.iter().enumerate() {
        let requirements = policy.requirements_for(method, host, path);
        assert!(
            requires_admin(&requirements),
            "policy {which}: path {} (normalized from {} as {}) does not require admin; method {} host {}",
            shown(path),
            shown(original),
            shown(&normalize_path(original)),
            shown(method),
            shown(host)
        );
    }
}

fn insertions(rest: &[u8]) {
    let Some((&count, rest)) = rest.split_first() else {
        return;
    };
    let count = usize::from(count % 8).min(rest.len() / 2);
    let (pairs, path) = rest.split_at(count * 2);
    if !normalize_path(path).starts_with(b"/admin/") {
        return;
    }
    check_admin(b"GET", b"api.internal", path, path);
    let mut inserted = path.to_vec();
    for pair in pairs.chunks_exact(2) {
        let at = usize::from(pair[0]) % (inserted.len() + 1);
        inserted.insert(at, NOT_UTF8[usize::from(pair[1]) % NOT_UTF8.len()]);
        // A byte inside `..` makes it a name, so an insertion may move the
        // path; what must hold is that neither reading of the result (as
        // sent, without what is not text) reaches /admin/ unchecked.
        let text = readable(&inserted);
        let reaches_admin = normalize_path(&inserted).starts_with(b"/admin/")
            || text.is_some_and(|text| normalize_path(&text).starts_with(b"/admin/"));
        if reaches_admin {
            check_admin(b"GET", b"api.internal", &inserted, path);
        }
    }
}

fn request(rest: &[u8]) {
    let mut fields = rest.splitn(3, |&b| b == 0);
    let method = fields.next().unwrap_or(b"GET");
    let host = fields.next().unwrap_or(b"api.internal");
    let path = fields.next().unwrap_or(b"/");
    let fixed = fixed();
    if normalize_path(path).starts_with(b"/admin/") {
        check_admin(method, host, path, path);
    }
    let (method_text, host_text, path_text) = (readable(method), readable(host), readable(path));
    let as_read = (
        method_text.as_deref().unwrap_or(method),
        host_text.as_deref().unwrap_or(host),
        path_text.as_deref().unwrap_or(path),
    );
    for (which, policy) in fixed.policies.iter().enumerate() {
        let sent = policy.requirements_for(method, host, path);
        let read = policy.requirements_for(as_read.0, as_read.1, as_read.2);
        for held in &fixed.held {
            assert!(
                !sent.satisfied_by(held) || read.satisfied_by(held),
                "policy {which}: {:?} meets the requirements of {} {} {} but not those of its readable form {} {} {}",
                held.header_value(),
                shown(method),
                shown(host),
                shown(path),
                shown(as_read.0),
                shown(as_read.1),
                shown(as_read.2)
            );
        }
    }
}

fn file(rest: &[u8]) {
    let text = String::from_utf8_lossy(rest);
    match Policy::parse(&text) {
        Ok(policy) => {
            let path = text.lines().last().unwrap_or("/").as_bytes();
            for (method, host, path) in [
                (&b"GET"[..], &b"api.internal"[..], &b"/"[..]),
                (b"DELETE", b"x.internal:8080", b"/orders/7?x"),
                (b"G\xffET", b"[::1]:1", b"/a/\xff/../b"),
                (b"", b"", b""),
                (b"POST", b"example.com", path),
            ] {
                let _ = policy.requirements_for(method, host, path);
            }
        }
        Err(message) => assert!(!message.contains('\n'), "error on several lines: {message:?}"),
    }
}
