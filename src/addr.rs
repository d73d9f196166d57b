//! Addresses and ban targets as they enter saslguard: normalised once, checked once.
//!
//! `::ffff:192.0.2.1` is the IPv4 address 192.0.2.1 (Linux writes it so for IPv4
//! clients of a dual-stack socket): every address read from a log, the control socket
//! or the configuration is made canonical here, so the allowlist, loopback and the
//! IPv4 kernel set see it. A ban target that could cut the host off or hit a whole
//! protocol range is refused at the boundary ([`check_target`]). Leaf module: knows
//! nothing of the pipeline.

use ipnet::{IpNet, Ipv4Net};
use std::net::{IpAddr, Ipv4Addr};

/// `::ffff:a.b.c.d` as `a.b.c.d`; every other address unchanged.
pub fn canonical(a: IpAddr) -> IpAddr {
    a.to_canonical()
}

/// An address in 16 bytes, IPv4 as IPv4-mapped IPv6, as tables of an entry per
/// address keep it (issue 17): `IpAddr` takes 17 bytes, which beside the 8-byte fields
/// of an entry pads to 24. Made from a canonical address and read back as one, so the
/// two forms of one IPv4 address are one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrKey([u8; 16]);

impl From<IpAddr> for AddrKey {
    fn from(a: IpAddr) -> AddrKey {
        AddrKey(match a {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        })
    }
}

impl AddrKey {
    pub fn ip(self) -> IpAddr {
        canonical(IpAddr::V6(std::net::Ipv6Addr::from(self.0)))
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:192.0.2.0/120`) as its IPv4 network.
pub fn canonical_net(n: IpNet) -> IpNet {
    match n {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(n),
            None => n,
        },
        _ => n,
    }
}

/// `192.0.2.7`, `192.0.2.0/24`, `2001:db8::/32`, `::ffff:192.0.2.7`, made canonical. A
/// network with host bits set is refused: `192.0.2.7/24` is more likely a typo than a
/// wish to name the whole /24.
pub fn parse_network(s: &str) -> Result<IpNet, NetworkError> {
    let s = s.trim();
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(canonical(a)));
    }
    let n: IpNet = s
        .parse()
        .map_err(|_| NetworkError::Invalid(s.to_string()))?;
    if n.trunc() != n {
        return Err(NetworkError::HostBits {
            given: s.to_string(),
            network: n.trunc(),
        });
    }
    Ok(canonical_net(n))
}

/// Why a text is not an address or network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("{0:?} is not an address or network")]
    Invalid(String),
    #[error("{given:?} has host bits set; did you mean {network}?")]
    HostBits { given: String, network: IpNet },
}

/// Ranges no ban may touch: they are not hosts on the internet, and a ban there is a
/// mistake that can only hurt (the unspecified address, "this network", link-local,
/// multicast, broadcast).
const SPECIAL: [(&str, &str); 7] = [
    ("0.0.0.0/8", "the unspecified address or \"this network\""),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("::/128", "the unspecified address"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
];

/// [`SPECIAL`] parsed once: the policy's never-banned ranges take them in.
pub(crate) fn special_nets() -> &'static [(IpNet, &'static str)] {
    static NETS: std::sync::OnceLock<Vec<(IpNet, &'static str)>> = std::sync::OnceLock::new();
    NETS.get_or_init(|| {
        SPECIAL
            .iter()
            .map(|(n, why)| (n.parse().expect("valid constant"), *why))
            .collect()
    })
}

/// Why an address can never be a ban target, if it cannot.
pub fn special(a: IpAddr) -> Option<&'static str> {
    special_nets()
        .iter()
        .find_map(|(n, why)| n.contains(&a).then_some(*why))
}

/// What a ban target must satisfy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetRules {
    /// The shortest IPv4 prefix a ban may have without `--force`.
    pub shortest_v4: u8,
    /// The shortest IPv6 prefix a ban may have without `--force`.
    pub shortest_v6: u8,
}

impl Default for TargetRules {
    fn default() -> TargetRules {
        TargetRules {
            shortest_v4: 16,
            shortest_v6: 32,
        }
    }
}

/// A target refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{target}: {why}")]
pub struct Refused {
    pub target: String,
    pub why: String,
    /// `--force` would let it through.
    pub forceable: bool,
}

/// Checks a ban target where it enters (control socket, `nft ban`, another node): not
/// special, not touching `protected` (the allowlist and the host's own addresses), and
/// not shorter than the rules allow unless `force`. `force` never lets through a
/// target that touches a protected or special range: that ban would cut the host off
/// from itself or from what it must reach.
pub fn check_target(
    t: IpNet,
    protected: &[IpNet],
    rules: TargetRules,
    force: bool,
) -> Result<(), Refused> {
    let refuse = |why: String, forceable: bool| Refused {
        target: display(&t),
        why,
        forceable,
    };
    for (n, why) in special_nets() {
        if n.contains(&t) || t.contains(n) {
            return Err(refuse(
                format!("covers {why} addresses ({n}), which are never banned"),
                false,
            ));
        }
    }
    if let Some(p) = protected.iter().find(|p| p.contains(&t) || t.contains(*p)) {
        return Err(refuse(
            format!(
                "covers {}, which is allowlisted or one of this host's own addresses",
                display(p)
            ),
            false,
        ));
    }
    let shortest = match t {
        IpNet::V4(_) => rules.shortest_v4,
        IpNet::V6(_) => rules.shortest_v6,
    };
    if t.prefix_len() < shortest && !force {
        return Err(refuse(
            format!(
                "a /{} is wider than the shortest prefix allowed (/{shortest}); use --force if you mean it",
                t.prefix_len()
            ),
            true,
        ));
    }
    Ok(())
}

/// An address without `/32` or `/128`; a network with its length.
fn display(t: &IpNet) -> String {
    if t.prefix_len() == t.max_prefix_len() {
        t.addr().to_string()
    } else {
        t.to_string()
    }
}

/// The addresses of this host's interfaces (fail2ban's `ignoreself`), in the network
/// namespace saslguard runs in, from `/proc/net/fib_trie` (IPv4: the `/32 host LOCAL`
/// entries) and `/proc/net/if_inet6` (IPv6). Loopback included; sorted, no repeats.
pub fn own_addresses() -> std::io::Result<Vec<IpNet>> {
    let mut out = Vec::new();
    match std::fs::read_to_string("/proc/net/fib_trie") {
        Ok(t) => out.extend(local_v4(&t).into_iter().map(IpNet::from)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match std::fs::read_to_string("/proc/net/if_inet6") {
        Ok(t) => out.extend(local_v6(&t).into_iter().map(IpNet::from)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `|-- 192.0.2.1` followed by `/32 host LOCAL`: an address of this host.
fn local_v4(fib_trie: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let l = line.trim_start();
        if let Some(a) = l.strip_prefix("|-- ") {
            last = a.trim().parse().ok();
        } else if l.starts_with("/32 host LOCAL")
            && let Some(a) = last
        {
            out.push(IpAddr::V4(a));
        }
    }
    out
}

/// `20010db8000000000000000000000001 02 40 00 80 eth0`: 32 hex digits, then the rest.
fn local_v6(if_inet6: &str) -> Vec<IpAddr> {
    if_inet6
        .lines()
        .filter_map(|l| {
            let hex = l.split_whitespace().next()?;
            let n = u128::from_str_radix(hex, 16)
                .ok()
                .filter(|_| hex.len() == 32)?;
            Some(IpAddr::V6(n.into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        parse_network(s).unwrap()
    }

    #[test]
    fn special_ranges_are_named_and_an_ipv4_range_holds_no_ipv6_address() {
        assert_eq!(special("169.254.3.4".parse().unwrap()), Some("link-local"));
        assert_eq!(special("fe80::1".parse().unwrap()), Some("link-local"));
        assert_eq!(
            special("::".parse().unwrap()),
            Some("the unspecified address")
        );
        assert_eq!(special("::a9fe:304".parse().unwrap()), None);
        assert_eq!(special("192.0.2.1".parse().unwrap()), None);
    }

    #[test]
    fn mapped_addresses_and_networks_are_ipv4() {
        assert_eq!(net("::ffff:192.0.2.1").to_string(), "192.0.2.1/32");
        assert_eq!(net("::ffff:192.0.2.0/120").to_string(), "192.0.2.0/24");
        assert_eq!(net("::ffff:127.0.0.1").to_string(), "127.0.0.1/32");
        assert_eq!(net("2001:db8::/32").to_string(), "2001:db8::/32");
        assert!(
            parse_network("192.0.2.7/24")
                .unwrap_err()
                .to_string()
                .contains("192.0.2.0/24")
        );
    }

    #[test]
    fn targets_that_could_only_hurt_are_refused_even_with_force() {
        let rules = TargetRules::default();
        let own = [net("192.0.2.25"), net("2001:db8::25")];
        for t in [
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "255.255.255.255",
            "169.254.1.1",
            "fe80::1",
            "ff02::1",
            "8000::/1",
            "ffff::/16",
            "192.0.2.25",
            "192.0.2.0/24",
            "2001:db8::/48",
        ] {
            let e = check_target(net(t), &own, rules, true).unwrap_err();
            assert!(!e.forceable, "{t}: {e}");
        }
    }

    #[test]
    fn wide_prefixes_need_force() {
        let rules = TargetRules::default();
        let e = check_target(net("10.0.0.0/8"), &[], rules, false).unwrap_err();
        assert!(e.forceable && e.why.contains("/16"), "{e}");
        assert!(check_target(net("10.0.0.0/8"), &[], rules, true).is_ok());
        assert!(check_target(net("2001:db8::/31"), &[], rules, false).is_err());
        assert!(check_target(net("2001:db8::/32"), &[], rules, false).is_ok());
        assert!(check_target(net("198.51.100.7"), &[], rules, false).is_ok());
    }

    #[test]
    fn own_addresses_are_read_from_proc() {
        let fib = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     |-- 192.0.2.25\n        /32 host LOCAL\n     |-- 192.0.2.255\n        /32 link BROADCAST\n     |-- 127.0.0.1\n        /32 host LOCAL\n";
        assert_eq!(
            local_v4(fib),
            vec![
                "192.0.2.25".parse::<IpAddr>().unwrap(),
                "127.0.0.1".parse().unwrap()
            ]
        );
        let v6 = "20010db8000000000000000000000025 02 40 00 80     eth0\n00000000000000000000000000000001 01 80 10 80       lo\n";
        assert_eq!(
            local_v6(v6),
            vec![
                "2001:db8::25".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        // This process's own namespace has at least loopback.
        assert!(
            own_addresses()
                .unwrap()
                .contains(&"127.0.0.1/32".parse().unwrap())
        );
    }
}
