//! Networks: service allowlists and trusted proxies, written as CIDRs or
//! bare addresses.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
