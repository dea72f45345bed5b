//! Reference implementations, written from README.md's "Decision",
//! "Token format", "Route policy" and "Surfaces" sections rather than from
//! the library's code: the targets check that gatepass agrees with them.
//! Simple and slow on purpose.

use std::net::IpAddr;

use gatepass::model::NetList;
use gatepass::token::checksum;

// ---------------------------------------------------------------- tokens

/// How a token is looked up, per README "Token format".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key<'a> {
    /// `<id>|<secret>`.
    Id(i64, &'a [u8]),
    /// No `|`: the whole string is the secret, looked up by digest.
    Digest(&'a [u8]),
}

/// `<id>|<secret>` or `<secret>`, with `prefix` the configured prefix;
/// `None` when the token is malformed.
pub fn parse_token<'a>(prefix: &str, token: &'a [u8]) -> Option<Key<'a>> {
    let (id, secret) = match token.iter().position(|&b| b == b'|') {
        Some(bar) => (Some(&token[..bar]), &token[bar + 1..]),
        None => (None, token),
    };
    let id = match id {
        // Plain decimal digits that fit in an i64. gatepass also caps the
        // id at 19 digits, leading zeros included (documented nowhere,
        // harmless): mirrored so that the difference does not drown the
        // rest.
        Some(digits) => {
            if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            Some(std::str::from_utf8(digits).ok()?.parse::<i64>().ok()?)
        }
        None => None,
    };
    // 1 to 255 printable ASCII characters, no space.
    if secret.is_empty() || secret.len() > 255 || !secret.iter().all(|b| (0x21..=0x7e).contains(b))
    {
        return None;
    }
    let carries_prefix = !prefix.is_empty() && secret.starts_with(prefix.as_bytes());
    if carries_prefix {
        if !is_generated_body(&secret[prefix.len()..], true) {
            return None;
        }
    } else if is_generated_body(secret, false) && !is_generated_body(secret, true) {
        // Exactly the generated shape (40 alphanumerics, 8 lowercase hex):
        // the checksum must hold.
        return None;
    }
    Some(match id {
        Some(id) => Key::Id(id, secret),
        None => Key::Digest(secret),
    })
}

/// 40 `[A-Za-z0-9]` then 8 `[0-9a-f]`; with `checked`, the 8 must also be
/// the crc32b of the 40.
fn is_generated_body(body: &[u8], checked: bool) -> bool {
    if body.len() != 48 {
        return false;
    }
    let (entropy, tail) = body.split_at(40);
    let shape = entropy.iter().all(u8::is_ascii_alphanumeric)
        && tail.iter().all(|&b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    shape && (!checked || tail == checksum(entropy).as_bytes())
}

// ------------------------------------------------------------ credentials

/// The token of an `Authorization` value, per README "Decision": scheme
/// `bearer` in any case, then at least one space or tab, then the token;
/// ASCII whitespace around the whole value and before the token is not
/// part of it. A bare `Bearer` is an empty token. `None` for any other
/// scheme.
pub fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    if value.len() < 6 || !value[..6].eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let rest = &value[6..];
    match rest.first() {
        None => Some(rest),
        Some(b' ' | b'\t') => Some(rest.trim_ascii_start()),
        Some(_) => None,
    }
}

// -------------------------------------------------------------- addresses

/// A forwarded address as README "Surfaces" reads one: the entry trimmed of
/// ASCII whitespace, parsed as an IP address, IPv4-mapped IPv6 as IPv4.
pub fn address(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry.trim_ascii()).ok()?;
    text.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// One `X-Forwarded-For` entry: line `line`, bytes `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    pub start: usize,
    pub end: usize,
}

/// Every entry of every line, left to right (lines in order, RFC 9110 §5.3).
pub fn entries(lines: &[&[u8]]) -> Vec<Entry> {
    let mut out = Vec::new();
    for (line, bytes) in lines.iter().enumerate() {
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b',' {
                out.push(Entry {
                    line,
                    start,
                    end: i,
                });
                start = i + 1;
            }
        }
        out.push(Entry {
            line,
            start,
            end: bytes.len(),
        });
    }
    out
}

pub fn entry_bytes<'a>(lines: &[&'a [u8]], entry: Entry) -> &'a [u8] {
    &lines[entry.line][entry.start..entry.end]
}

/// README "Surfaces", HTTP: the peer unless it is a trusted proxy; then
/// `X-Real-IP` if present (unknown if sent twice or unreadable), else the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy,
/// every entry right of it readable; all trusted: the left-most.
pub fn client_behind_proxies(
    peer: IpAddr,
    trusted: &NetList,
    x_real_ip: &[&[u8]],
    x_forwarded_for: &[&[u8]],
) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return Some(peer);
    }
    match x_real_ip {
        [] => {}
        [one] => return address(one),
        _ => return None,
    }
    let all = entries(x_forwarded_for);
    let mut client = peer;
    for &entry in all.iter().rev() {
        let ip = address(entry_bytes(x_forwarded_for, entry))?;
        if !trusted.contains(ip) {
            return Some(ip);
        }
        client = ip;
    }
    Some(client)
}

/// README "Surfaces", gRPC: with N trusted hops the (N+1)-th
/// `x-forwarded-for` entry from the right; too few entries, or N = 0: the
/// source address.
pub fn client_behind_envoy(
    source: Option<IpAddr>,
    trusted_hops: u32,
    x_forwarded_for: &[&[u8]],
) -> Option<IpAddr> {
    let source = source.map(|ip| ip.to_canonical());
    if trusted_hops == 0 {
        return source;
    }
    let all = entries(x_forwarded_for);
    let hops = trusted_hops as usize;
    if all.len() > hops {
        address(entry_bytes(x_forwarded_for, all[all.len() - 1 - hops]))
    } else {
        source
    }
}

// -------------------------------------------------------------- abilities

/// README "Decision": `*` grants everything; `p:*` grants every ability
/// under `p:`; any other name grants itself.
pub fn grants(held: &str, required: &str) -> bool {
    held == "*"
        || held == required
        || held
            .strip_suffix('*')
            .is_some_and(|prefix| prefix.ends_with(':') && required.starts_with(prefix))
}

/// The names of a comma-separated list, blank entries ignored. Trims as
/// `str::trim` does (Unicode whitespace), as gatepass documents nothing
/// else.
pub fn names(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect()
}

/// Requirements as two lists: every `all` name, and one of each `any`
/// group.
#[derive(Debug, Clone, Default)]
pub struct Requirements<'a> {
    pub all: Vec<&'a str>,
    pub any: Vec<Vec<&'a str>>,
}

impl<'a> Requirements<'a> {
    pub fn require_all(&mut self, list: &'a str) {
        self.all.extend(names(list));
    }

    pub fn require_any(&mut self, list: &'a str) {
        let group = names(list);
        if !group.is_empty() {
            self.any.push(group);
        }
    }

    pub fn satisfied_by(&self, held: &[&str]) -> bool {
        let has = |required: &str| held.iter().any(|h| grants(h, required));
        self.all.iter().all(|r| has(r)) && self.any.iter().all(|g| g.iter().any(|r| has(r)))
    }
}

// ------------------------------------------------------------------ globs

/// README "Route policy" globs: `*` matches any run of bytes other than
/// `/`, `**` any run at all, every other byte itself. The backtracking
/// matcher of src/decision/policy/path.rs's tests, with each `**`/`*` loop
/// written as "skip nothing, or one more byte" and memoised, so it takes
/// time glob × path instead of exponential time.
pub fn glob_matches(glob: &[u8], path: &[u8]) -> bool {
    let mut memo = vec![None; (glob.len() + 1) * (path.len() + 1)];
    glob_from(glob, path, 0, 0, &mut memo)
}

fn glob_from(glob: &[u8], path: &[u8], g: usize, p: usize, memo: &mut [Option<bool>]) -> bool {
    let slot = g * (path.len() + 1) + p;
    if let Some(known) = memo[slot] {
        return known;
    }
    let matched = match &glob[g..] {
        [] => p == path.len(),
        [b'*', b'*', ..] => {
            glob_from(glob, path, g + 2, p, memo)
                || (p < path.len() && glob_from(glob, path, g, p + 1, memo))
        }
        [b'*', ..] => {
            glob_from(glob, path, g + 1, p, memo)
                || (p < path.len() && path[p] != b'/' && glob_from(glob, path, g, p + 1, memo))
        }
        [byte, ..] => p < path.len() && path[p] == *byte && glob_from(glob, path, g + 1, p + 1, memo),
    };
    memo[slot] = Some(matched);
    matched
}

/// The verbatim exponential reference of path.rs's tests, for the small
/// inputs where it is fast; the targets check the memoised one against it.
pub fn glob_backtracking(glob: &[u8], path: &[u8]) -> bool {
    match glob {
        [] => path.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=path.len()).any(|skip| glob_backtracking(rest, &path[skip..])),
        [b'*', rest @ ..] => {
            let segment = path.iter().position(|&b| b == b'/').unwrap_or(path.len());
            (0..=segment).any(|skip| glob_backtracking(rest, &path[skip..]))
        }
        [first, rest @ ..] => path.first() == Some(first) && glob_backtracking(rest, &path[1..]),
    }
}
