//! Client addresses: service allowlists, trusted proxies and the headers
//! proxies use to pass the original client on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};

/// A list of networks written as CIDRs or bare addresses, IPv4 or IPv6.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetList(Vec<IpNet>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidNet {
    #[error("{0:?} is not an IP address or CIDR")]
    Unparsable(String),
    #[error("{given} has host bits set; did you mean {network}?")]
    HostBitsSet { given: String, network: IpNet },
}

impl NetList {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets.into_iter().map(canonical_net).collect())
    }

    /// Parses `10.0.0.0/8, 192.168.1.7, 2001:db8::/32`. Blank entries are
    /// ignored, so an empty string is an empty list.
    pub fn parse(list: &str) -> Result<Self, InvalidNet> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(parse_net)
            .collect::<Result<Vec<_>, _>>()
            .map(Self::new)
    }

    pub fn loopback() -> Self {
        Self::new(vec![
            IpNet::V4(Ipv4Net::new(Ipv4Addr::new(127, 0, 0, 0), 8).expect("valid prefix")),
            IpNet::from(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ])
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// An allowlist: empty admits any address, and an unknown address is
    /// admitted only by an empty list.
    pub fn admits(&self, ip: Option<IpAddr>) -> bool {
        self.is_empty() || ip.is_some_and(|ip| self.contains(ip))
    }
}

impl std::fmt::Display for NetList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            // Bare addresses print without their /32 or /128.
            if net.prefix_len() == net.max_prefix_len() {
                write!(f, "{}", net.addr())?;
            } else {
                write!(f, "{net}")?;
            }
        }
        Ok(())
    }
}

fn parse_net(entry: &str) -> Result<IpNet, InvalidNet> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    let net: IpNet = entry
        .parse()
        .map_err(|_| InvalidNet::Unparsable(entry.to_owned()))?;
    if net.trunc() != net {
        return Err(InvalidNet::HostBitsSet {
            given: entry.to_owned(),
            network: net.trunc(),
        });
    }
    Ok(net)
}

/// `::ffff:10.0.0.0/104` is stored and matched as `10.0.0.0/8`, the same way
/// client addresses are canonicalised.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

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
    fn empty_allowlist_admits_anyone_even_unknown() {
        let list = NetList::parse("").unwrap();
        assert!(list.admits(Some(ip("203.0.113.9"))));
        assert!(list.admits(None));
    }

    #[test]
    fn allowlist_matches_cidrs_and_bare_addresses_of_both_families() {
        let list = NetList::parse("10.0.0.0/8, 192.168.1.7, 2001:db8::/32, ::1").unwrap();
        assert!(list.admits(Some(ip("10.20.30.40"))));
        assert!(list.admits(Some(ip("192.168.1.7"))));
        assert!(!list.admits(Some(ip("192.168.1.8"))));
        assert!(list.admits(Some(ip("2001:db8:1::5"))));
        assert!(list.admits(Some(ip("::1"))));
        assert!(!list.admits(Some(ip("2001:db9::1"))));
        assert!(!list.admits(None));
    }

    #[test]
    fn ipv4_mapped_ipv6_client_is_matched_as_ipv4() {
        let list = NetList::parse("10.0.0.0/8").unwrap();
        assert!(list.admits(Some(ip("::ffff:10.1.2.3"))));
        let mapped_list = NetList::parse("::ffff:10.0.0.0/104").unwrap();
        assert!(mapped_list.admits(Some(ip("10.1.2.3"))));
    }

    #[test]
    fn bad_entries_are_clear_errors() {
        assert_eq!(
            NetList::parse("10.0.0.0/8, nope"),
            Err(InvalidNet::Unparsable("nope".into()))
        );
        assert!(matches!(
            NetList::parse("10.1.2.3/8"),
            Err(InvalidNet::HostBitsSet { .. })
        ));
        assert!(NetList::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn display_round_trips() {
        let list = NetList::parse("10.0.0.0/8,192.168.1.7,2001:db8::/32").unwrap();
        assert_eq!(list.to_string(), "10.0.0.0/8,192.168.1.7,2001:db8::/32");
        assert_eq!(NetList::parse(&list.to_string()).unwrap(), list);
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
