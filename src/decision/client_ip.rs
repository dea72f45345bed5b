//! The client address behind proxies, from the headers they use to pass
//! the original client on. Bytes in, an address or "unknown" out (pure).

use std::net::IpAddr;

use crate::model::NetList;

/// The client behind an HTTP proxy (SPEC §5): the peer itself unless the
/// peer is a trusted proxy; then `X-Real-IP`, else the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy. Headers are
/// read as bytes, every value the request carries: a trusted proxy that
/// forwards an address we cannot read (not an address, not text, or
/// `X-Real-IP` sent twice) leaves the client unknown, which only an empty
/// allowlist admits. It never makes the client the proxy itself.
pub fn client_behind_proxies<'a, F>(
    peer: IpAddr,
    trusted: &NetList,
    x_real_ip: impl IntoIterator<Item = &'a [u8]>,
    x_forwarded_for: F,
) -> Option<IpAddr>
where
    F: IntoIterator<Item = &'a [u8]>,
    F::IntoIter: DoubleEndedIterator,
{
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return Some(peer);
    }
    let mut real = x_real_ip.into_iter();
    match (real.next(), real.next()) {
        (Some(value), None) => return parse_address(value),
        (Some(_), Some(_)) => return None,
        (None, _) => {}
    }
    let mut entries = forwarded_entries_from_right(x_forwarded_for).peekable();
    if entries.peek().is_none() {
        return Some(peer);
    }
    let mut client = peer;
    for entry in entries {
        let ip = parse_address(entry)?;
        if !trusted.contains(ip) {
            return Some(ip);
        }
        client = ip;
    }
    Some(client)
}

/// The client behind Envoy (SPEC §5): with `trusted_hops` = 0 the source
/// address; with N > 0 the (N+1)-th `x-forwarded-for` entry from the right,
/// as Envoy's own `xff_num_trusted_hops` reads it once it has appended its
/// peer. Too few entries fall back to the source address, as Envoy does;
/// an entry that cannot be read leaves the client unknown.
pub fn client_behind_envoy<'a, F>(
    source: Option<IpAddr>,
    trusted_hops: u32,
    x_forwarded_for: F,
) -> Option<IpAddr>
where
    F: IntoIterator<Item = &'a [u8]>,
    F::IntoIter: DoubleEndedIterator,
{
    if trusted_hops == 0 {
        return source.map(|ip| ip.to_canonical());
    }
    let hops = usize::try_from(trusted_hops).unwrap_or(usize::MAX);
    match forwarded_entries_from_right(x_forwarded_for).nth(hops) {
        Some(entry) => parse_address(entry),
        None => source.map(|ip| ip.to_canonical()),
    }
}

/// Every entry of every `X-Forwarded-For` line, right-most first. Lines
/// sent separately form one list, in order (RFC 9110 §5.3).
fn forwarded_entries_from_right<'a, F>(lines: F) -> impl Iterator<Item = &'a [u8]>
where
    F: IntoIterator<Item = &'a [u8]>,
    F::IntoIter: DoubleEndedIterator,
{
    lines
        .into_iter()
        .rev()
        .flat_map(|line| line.rsplit(|&b| b == b','))
}

/// One address, with optional surrounding whitespace; anything else
/// (a port, a name, bytes that are not text) is unreadable.
fn parse_address(entry: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(entry.trim_ascii())
        .ok()?
        .parse::<IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: [&[u8]; 0] = [];

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let trusted = NetList::loopback();
        let client = client_behind_proxies(
            ip("198.51.100.4"),
            &trusted,
            [&b"10.0.0.1"[..]],
            [&b"10.0.0.2"[..]],
        );
        assert_eq!(client, Some(ip("198.51.100.4")));
    }

    #[test]
    fn trusted_peer_x_real_ip_wins() {
        let client = client_behind_proxies(
            ip("127.0.0.1"),
            &NetList::loopback(),
            [&b"203.0.113.5"[..]],
            [&b"10.0.0.2"[..]],
        );
        assert_eq!(client, Some(ip("203.0.113.5")));
        for unreadable in [&b"x"[..], b"10.9.9.9\xff", b"\xff", b"", b"10.9.9.9:80"] {
            let client =
                client_behind_proxies(ip("127.0.0.1"), &NetList::loopback(), [unreadable], NONE);
            assert_eq!(client, None, "{unreadable:?}");
        }
        let twice = client_behind_proxies(
            ip("127.0.0.1"),
            &NetList::loopback(),
            [&b"203.0.113.5"[..], b"127.0.0.1"],
            NONE,
        );
        assert_eq!(twice, None);
    }

    #[test]
    fn trusted_peer_uses_rightmost_untrusted_forwarded_entry() {
        let trusted = NetList::parse("127.0.0.0/8,10.0.0.0/8").unwrap();
        let behind = |lines: &[&[u8]]| {
            client_behind_proxies(ip("127.0.0.1"), &trusted, NONE, lines.iter().copied())
        };
        assert_eq!(
            behind(&[b"6.6.6.6, 203.0.113.5, 10.1.1.1"]),
            Some(ip("203.0.113.5"))
        );
        assert_eq!(behind(&[b"10.0.0.9"]), Some(ip("10.0.0.9")));
        assert_eq!(behind(&[b"x, 10.0.0.9"]), None);
        assert_eq!(behind(&[b"\xff, 10.0.0.9"]), None);
        assert_eq!(behind(&[]), Some(ip("127.0.0.1")));
        // A client-sent junk entry left of the real client is never read.
        assert_eq!(
            behind(&[b"\xff, 10.9.9.9, 203.0.113.5"]),
            Some(ip("203.0.113.5"))
        );
        assert_eq!(behind(&[b"\xff", b"203.0.113.5"]), Some(ip("203.0.113.5")));
        // Lines are one list: the right-most line's last entry first.
        assert_eq!(
            behind(&[b"203.0.113.5", b"10.0.0.1"]),
            Some(ip("203.0.113.5"))
        );
        assert_eq!(behind(&[b"203.0.113.5", b"\xff"]), None);
    }

    #[test]
    fn envoy_source_address_or_trusted_hops() {
        let source = Some(ip("10.0.0.5"));
        assert_eq!(
            client_behind_envoy(source, 0, [&b"1.1.1.1"[..]]),
            Some(ip("10.0.0.5"))
        );
        assert_eq!(
            client_behind_envoy(source, 1, [&b"6.6.6.6, 203.0.113.7, 10.0.0.5"[..]]),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            client_behind_envoy(source, 3, [&b"203.0.113.7"[..]]),
            Some(ip("10.0.0.5"))
        );
        assert_eq!(client_behind_envoy(None, 0, NONE), None);
        // An unreadable entry at the trusted position is no fallback to
        // the source address.
        assert_eq!(
            client_behind_envoy(source, 1, [&b"\xff, 10.0.0.5"[..]]),
            None
        );
        assert_eq!(
            client_behind_envoy(source, 1, [&b"203.0.113.7"[..], b"10.0.0.5"]),
            Some(ip("203.0.113.7"))
        );
    }
}
