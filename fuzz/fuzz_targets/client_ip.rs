#![no_main]
//! Client addresses behind proxies (README "Surfaces"):
//! `client_behind_proxies` (HTTP: trusted peer, X-Real-IP, X-Forwarded-For)
//! and `client_behind_envoy` (gRPC: source address or the (N+1)-th XFF
//! entry from the right), plus `NetList::parse`.
//! - nothing panics; both functions agree with references written from
//!   the README (fuzz/src/reference.rs);
//! - an untrusted peer is the client, whatever the headers say;
//! - behind a trusted peer with a forwarded header present, the client is
//!   unknown or an address that appears in those headers (never the
//!   peer's own address unless a header names it); behind Envoy, unknown,
//!   the source, or an address in `x-forwarded-for`;
//! - bytes left of the right-most untrusted readable XFF entry (HTTP), or
//!   of the entry N hops from the right (Envoy), never change the answer:
//!   they are replaced by junk and the answer compared;
//! - a parsed `NetList` prints as text that parses back to itself.
//!
//! Input: four control bytes (trusted list, peer, hops, source, each an
//! index into a fixed pool), then lines: `F` an X-Forwarded-For line, `R`
//! an X-Real-IP value, `J` junk for the rewrites, `N` a trusted list to
//! parse instead of the pool's, `P` a peer and `S` a source address.

use std::net::IpAddr;

use gatepass::model::NetList;
use gatepass::decision::client_ip::{client_behind_envoy, client_behind_proxies};
use gatepass_fuzz::reference::{self, Entry};
use libfuzzer_sys::fuzz_target;

const ADDRESSES: [&str; 12] = [
    "127.0.0.1",
    "::1",
    "10.1.2.3",
    "192.0.2.10",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "203.0.113.5",
    "2001:db8::1",
    "0.0.0.0",
    "::",
    "127.255.255.254",
    "fe80::1",
];

const TRUSTED: [&str; 7] = [
    "127.0.0.0/8, ::1",
    "127.0.0.0/8,10.0.0.0/8",
    "",
    "0.0.0.0/0, ::/0",
    "::ffff:10.0.0.0/104, ::1",
    "192.0.2.0/24, 2001:db8::/32, 127.0.0.1",
    "::ffff:0.0.0.0/96",
];

fn pick(byte: u8) -> IpAddr {
    ADDRESSES[usize::from(byte) % ADDRESSES.len()]
        .parse()
        .expect("pool address")
}

fuzz_target!(
    init: {
        gatepass_fuzz::seeds::write_if_asked("client_ip");
    },
    |data: &[u8]| {
        let mut control = [0u8; 4];
        let split = data.len().min(4);
        control[..split].copy_from_slice(&data[..split]);
        let mut trusted = if control[0] == 0 {
            NetList::loopback()
        } else {
            NetList::parse(TRUSTED[usize::from(control[0]) % TRUSTED.len()]).expect("pool list")
        };
        let mut peer = pick(control[1]);
        let hops = u32::from(control[2] % 5);
        let mut source = (control[3] % 13 != 12).then(|| pick(control[3]));

        let (mut x_real_ip, mut x_forwarded_for, mut junk) = (Vec::new(), Vec::new(), Vec::new());
        for line in data[split..].split(|&b| b == b'\n') {
            let Some((&kind, value)) = line.split_first() else {
                continue;
            };
            match kind {
                b'F' => x_forwarded_for.push(value),
                b'R' => x_real_ip.push(value),
                b'J' => junk.push(value),
                b'N' => {
                    let text = String::from_utf8_lossy(value);
                    if let Ok(list) = NetList::parse(&text) {
                        let printed = list.to_string();
                        assert_eq!(
                            NetList::parse(&printed).as_ref(),
                            Ok(&list),
                            "{text:?} printed as {printed:?}"
                        );
                        trusted = list;
                    }
                }
                b'P' => {
                    if let Some(ip) = std::str::from_utf8(value).ok().and_then(|t| t.parse().ok()) {
                        peer = ip;
                    }
                }
                b'S' => source = std::str::from_utf8(value).ok().and_then(|t| t.parse().ok()),
                _ => {}
            }
        }
        if junk.is_empty() {
            junk = vec![&b"\xff, 6.6.6.6"[..], b"10.0.0.1"];
        }
        check_proxies(peer, &trusted, &x_real_ip, &x_forwarded_for, &junk);
        check_envoy(source, hops, &x_forwarded_for, &junk);
    }
);

/// Every address a list of header values names.
fn named(values: &[&[u8]]) -> Vec<IpAddr> {
    reference::entries(values)
        .into_iter()
        .filter_map(|entry| reference::address(reference::entry_bytes(values, entry)))
        .collect()
}

/// `lines` with everything left of `keep` replaced by `junk`: the junk
/// lines first, then `keep`'s line from `keep` on, after the first junk
/// line and a comma when `glue`.
fn rewrite_left_of(lines: &[&[u8]], keep: Entry, junk: &[&[u8]], glue: bool) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = junk.iter().map(|line| line.to_vec()).collect();
    let mut line = Vec::new();
    if glue {
        line.extend_from_slice(junk[0]);
        line.push(b',');
    }
    line.extend_from_slice(&lines[keep.line][keep.start..]);
    out.push(line);
    out.extend(lines[keep.line + 1..].iter().map(|line| line.to_vec()));
    out
}

fn check_proxies(
    peer: IpAddr,
    trusted: &NetList,
    x_real_ip: &[&[u8]],
    x_forwarded_for: &[&[u8]],
    junk: &[&[u8]],
) {
    let got = client_behind_proxies(
        peer,
        trusted,
        x_real_ip.iter().copied(),
        x_forwarded_for.iter().copied(),
    );
    let want = reference::client_behind_proxies(peer, trusted, x_real_ip, x_forwarded_for);
    let case = format!(
        "peer {peer} trusted [{trusted}] x-real-ip {x_real_ip:?} x-forwarded-for {x_forwarded_for:?}"
    );
    assert_eq!(got, want, "{case}");

    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        assert_eq!(got, Some(peer), "untrusted peer not returned as is: {case}");
        return;
    }
    if !x_real_ip.is_empty() || !x_forwarded_for.is_empty() {
        let mut in_headers = named(x_real_ip);
        in_headers.extend(named(x_forwarded_for));
        if let Some(client) = got {
            assert!(
                in_headers.contains(&client),
                "client {client} is in no forwarded header: {case}"
            );
        }
    }

    // The right-most readable entry that is not a trusted proxy: what is
    // left of it was written by the client and must not matter.
    let all = reference::entries(x_forwarded_for);
    let decisive = all.iter().rev().copied().find(|&entry| {
        reference::address(reference::entry_bytes(x_forwarded_for, entry))
            .is_some_and(|ip| !trusted.contains(ip))
    });
    if let Some(entry) = decisive {
        for (lines, glue) in [(&junk[..0], false), (junk, true), (junk, false)] {
            let rewritten = rewrite_left_of(x_forwarded_for, entry, lines, glue && !lines.is_empty());
            let rewritten: Vec<&[u8]> = rewritten.iter().map(Vec::as_slice).collect();
            let again = client_behind_proxies(
                peer,
                trusted,
                x_real_ip.iter().copied(),
                rewritten.iter().copied(),
            );
            assert_eq!(
                again, got,
                "bytes left of the client's entry changed the answer: {case} rewritten {rewritten:?}"
            );
        }
    }
}

fn check_envoy(source: Option<IpAddr>, hops: u32, x_forwarded_for: &[&[u8]], junk: &[&[u8]]) {
    let got = client_behind_envoy(source, hops, x_forwarded_for.iter().copied());
    let want = reference::client_behind_envoy(source, hops, x_forwarded_for);
    let case = format!("source {source:?} hops {hops} x-forwarded-for {x_forwarded_for:?}");
    assert_eq!(got, want, "{case}");
    if let Some(client) = got {
        assert!(
            Some(client) == source.map(|ip| ip.to_canonical())
                || named(x_forwarded_for).contains(&client),
            "client {client} is neither the source nor in x-forwarded-for: {case}"
        );
    }
    let all = reference::entries(x_forwarded_for);
    if hops > 0 && all.len() > hops as usize {
        let entry = all[all.len() - 1 - hops as usize];
        for (lines, glue) in [(&junk[..0], false), (junk, true), (junk, false)] {
            let rewritten = rewrite_left_of(x_forwarded_for, entry, lines, glue && !lines.is_empty());
            let rewritten: Vec<&[u8]> = rewritten.iter().map(Vec::as_slice).collect();
            let again = client_behind_envoy(source, hops, rewritten.iter().copied());
            assert_eq!(
                again, got,
                "bytes left of the trusted position changed the answer: {case} rewritten {rewritten:?}"
            );
        }
    }
}
