//! Blocks: whole countries, AS numbers or listed networks refused before their first
//! guess (`[[block]]`), where `[[origin]]` rules only lower the threshold.
//!
//! A block's networks come from the configured MaxMind-format databases (their tree
//! walked over `0.0.0.0/0` and `::/0`) and from its own list; its `except` networks are
//! cut out. The result is a set of merged address ranges, the fewest the kernel needs:
//! adjacent and overlapping networks become one range. The allowlist and the host's own
//! addresses are not cut out here: the nftables enforcer accepts them ahead of every
//! block, so they win even when they change between two loads.
//!
//! Pure but for reading the databases (through [`Geo`]); nothing here touches the kernel.

use crate::geo::{Geo, GeoError};
use ipnet::IpNet;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The ports a block refuses when it names none: the login ports (submissions,
/// submission, POP3, IMAP, IMAPS, POP3S, ManageSieve), never 25: an MX that refuses a
/// country's servers loses their mail.
pub const LOGIN_PORTS: [u16; 7] = [465, 587, 110, 143, 993, 995, 4190];

/// One `[[block]]` section, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockConfig {
    /// Letters, digits, `_` and `-`: it names the block's kernel sets.
    pub name: String,
    /// ISO 3166-1 codes whose networks are blocked.
    pub countries: Vec<String>,
    /// Every country but these is blocked ("nobody abroad").
    pub not_countries: Vec<String>,
    pub asns: Vec<u32>,
    /// Networks listed inline or in `networks_file`.
    pub networks: Vec<IpNet>,
    pub ports: Vec<u16>,
    /// Networks never blocked by this block.
    pub except: Vec<IpNet>,
}

impl BlockConfig {
    fn by_country(&self) -> bool {
        !self.countries.is_empty() || !self.not_countries.is_empty()
    }

    fn blocks_country(&self, code: &str) -> bool {
        self.countries.iter().any(|c| c == code)
            || (!self.not_countries.is_empty() && !self.not_countries.iter().any(|c| c == code))
    }
}

/// Inclusive ranges of addresses, IPv4 and IPv6 apart, sorted, merged and disjoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges {
    v4: Vec<(u128, u128)>,
    v6: Vec<(u128, u128)>,
}

fn bounds(n: &IpNet) -> (bool, u128, u128) {
    match n {
        IpNet::V4(n) => (
            false,
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (true, u128::from(n.network()), u128::from(n.broadcast())),
    }
}

fn merge(v: &mut Vec<(u128, u128)>) {
    v.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
    for &(a, b) in v.iter() {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    *v = out;
}

/// `a` without what `b` covers; both sorted and disjoint.
fn minus(a: &[(u128, u128)], b: &[(u128, u128)]) -> Vec<(u128, u128)> {
    let mut out = Vec::new();
    let mut j = 0;
    for &(mut s, e) in a {
        while j < b.len() && b[j].1 < s {
            j += 1;
        }
        let mut k = j;
        let mut whole = true;
        while k < b.len() && b[k].0 <= e {
            if b[k].0 > s {
                out.push((s, b[k].0 - 1));
            }
            if b[k].1 >= e {
                whole = false;
                break;
            }
            s = b[k].1 + 1;
            k += 1;
        }
        if whole {
            out.push((s, e));
        }
    }
    out
}

/// The fewest CIDRs that cover `[a, b]` exactly.
fn cidrs_of(mut a: u128, b: u128, v6: bool, out: &mut Vec<IpNet>) {
    let bits: u32 = if v6 { 128 } else { 32 };
    // The last address of the aligned block of 2^k addresses at `a`.
    let last_of = |a: u128, k: u32| {
        if k == 128 {
            Some(u128::MAX)
        } else {
            a.checked_add((1u128 << k) - 1)
        }
    };
    loop {
        // The largest aligned block at `a` that ends at or before `b`.
        let mut k = a.trailing_zeros().min(bits);
        while k > 0 && last_of(a, k).is_none_or(|l| l > b) {
            k -= 1;
        }
        let len = (bits - k) as u8;
        let net = if v6 {
            IpNet::new(IpAddr::V6(Ipv6Addr::from(a)), len)
        } else {
            IpNet::new(IpAddr::V4(Ipv4Addr::from(a as u32)), len)
        };
        if let Ok(n) = net {
            out.push(n);
        }
        match last_of(a, k) {
            Some(last) if last < b => a = last + 1,
            _ => return,
        }
    }
}

impl Ranges {
    pub fn from_nets<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> Ranges {
        let mut r = Ranges::default();
        for n in nets {
            let (v6, a, b) = bounds(n);
            if v6 { &mut r.v6 } else { &mut r.v4 }.push((a, b));
        }
        merge(&mut r.v4);
        merge(&mut r.v6);
        r
    }

    /// These ranges without what `other` covers.
    pub fn minus(&self, other: &Ranges) -> Ranges {
        Ranges {
            v4: minus(&self.v4, &other.v4),
            v6: minus(&self.v6, &other.v6),
        }
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        let (list, x) = match addr {
            IpAddr::V4(a) => (&self.v4, u128::from(u32::from(a))),
            IpAddr::V6(a) => (&self.v6, u128::from(a)),
        };
        let i = list.partition_point(|r| r.1 < x);
        list.get(i).is_some_and(|r| r.0 <= x)
    }

    /// Whether every address of `net` is in these ranges.
    pub fn covers(&self, net: &IpNet) -> bool {
        let (v6, a, b) = bounds(net);
        let list = if v6 { &self.v6 } else { &self.v4 };
        let i = list.partition_point(|r| r.1 < a);
        list.get(i).is_some_and(|r| r.0 <= a && r.1 >= b)
    }

    /// The IPv4 ranges as (first, last) addresses.
    pub fn v4(&self) -> impl Iterator<Item = (Ipv4Addr, Ipv4Addr)> + '_ {
        self.v4
            .iter()
            .map(|&(a, b)| (Ipv4Addr::from(a as u32), Ipv4Addr::from(b as u32)))
    }

    /// The IPv6 ranges as (first, last) addresses.
    pub fn v6(&self) -> impl Iterator<Item = (Ipv6Addr, Ipv6Addr)> + '_ {
        self.v6
            .iter()
            .map(|&(a, b)| (Ipv6Addr::from(a), Ipv6Addr::from(b)))
    }

    /// Number of ranges (IPv4, IPv6): what the kernel's interval sets hold.
    pub fn len(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// IPv4 addresses covered, and IPv6 /64s covered (rounded down).
    pub fn size(&self) -> (u64, u128) {
        let v4 = self.v4.iter().map(|&(a, b)| (b - a + 1) as u64).sum();
        let v6 = self
            .v6
            .iter()
            .map(|&(a, b)| match b - a {
                u128::MAX => 1u128 << 64,
                n => (n + 1) >> 64,
            })
            .sum();
        (v4, v6)
    }

    /// The same addresses as the fewest CIDRs.
    pub fn cidrs(&self) -> Vec<IpNet> {
        let mut out = Vec::new();
        for &(a, b) in &self.v4 {
            cidrs_of(a, b, false, &mut out);
        }
        for &(a, b) in &self.v6 {
            cidrs_of(a, b, true, &mut out);
        }
        out
    }
}

/// A block with its networks computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub name: String,
    pub ports: Vec<u16>,
    pub ranges: Ranges,
    /// Build times (Unix seconds) of the databases it was computed from.
    pub country_build: Option<u64>,
    pub asn_build: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("[[block]] {block}: blocks by {what}, but no {what} database is loaded")]
    NoDatabase { block: String, what: &'static str },
    #[error("[[block]] {block}: {source}")]
    Database { block: String, source: GeoError },
}

/// Computes one block's ranges from the databases `geo` has loaded.
pub fn compute(b: &BlockConfig, geo: &Geo) -> Result<Blocked, BlockError> {
    let mut nets: Vec<IpNet> = b.networks.clone();
    let db_err = |source| BlockError::Database {
        block: b.name.clone(),
        source,
    };
    let mut country_build = None;
    let mut asn_build = None;
    if b.by_country() {
        let (found, build) = geo
            .country_networks(|c| b.blocks_country(c))
            .map_err(db_err)?
            .ok_or_else(|| BlockError::NoDatabase {
                block: b.name.clone(),
                what: "country",
            })?;
        nets.extend(found);
        country_build = Some(build);
    }
    if !b.asns.is_empty() {
        let (found, build) = geo
            .asn_networks(|n| b.asns.contains(&n))
            .map_err(db_err)?
            .ok_or_else(|| BlockError::NoDatabase {
                block: b.name.clone(),
                what: "ASN",
            })?;
        nets.extend(found);
        asn_build = Some(build);
    }
    let ranges = Ranges::from_nets(&nets).minus(&Ranges::from_nets(&b.except));
    Ok(Blocked {
        name: b.name.clone(),
        ports: b.ports.clone(),
        ranges,
        country_build,
        asn_build,
    })
}

/// What `block list` and `status` say of a block.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Summary {
    pub name: String,
    pub ports: Vec<u16>,
    pub ranges_v4: usize,
    pub ranges_v6: usize,
    pub addresses_v4: u64,
    /// IPv6 /64 networks covered.
    pub networks_v6_64: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_database_build: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn_database_build: Option<u64>,
    /// Packets the kernel refused for this block (the daemon's `status` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_packets: Option<u64>,
}

impl Blocked {
    pub fn summary(&self) -> Summary {
        let (r4, r6) = self.ranges.len();
        let (a4, n6) = self.ranges.size();
        Summary {
            name: self.name.clone(),
            ports: self.ports.clone(),
            ranges_v4: r4,
            ranges_v6: r6,
            addresses_v4: a4,
            networks_v6_64: n6.to_string(),
            country_database_build: self.country_build,
            asn_database_build: self.asn_build,
            refused_packets: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn adjacent_and_overlapping_networks_become_the_fewest_cidrs() {
        let r = Ranges::from_nets(&nets(&[
            "192.0.2.0/25",
            "192.0.2.128/25",
            "198.51.100.0/24",
            "198.51.100.7/32",
            "2001:db8::/33",
            "2001:db8:8000::/33",
        ]));
        assert_eq!(r.len(), (2, 1));
        assert_eq!(
            r.cidrs(),
            nets(&["192.0.2.0/24", "198.51.100.0/24", "2001:db8::/32"])
        );
    }

    #[test]
    fn except_cuts_holes() {
        let r = Ranges::from_nets(&nets(&["192.0.2.0/24"])).minus(&Ranges::from_nets(&nets(&[
            "192.0.2.7/32",
            "192.0.2.128/26",
        ])));
        assert!(!r.contains("192.0.2.7".parse().unwrap()));
        assert!(r.contains("192.0.2.6".parse().unwrap()));
        assert!(r.contains("192.0.2.8".parse().unwrap()));
        assert!(!r.contains("192.0.2.130".parse().unwrap()));
        assert!(r.contains("192.0.2.200".parse().unwrap()));
        assert_eq!(r.size().0, 256 - 1 - 64);
    }

    #[test]
    fn the_whole_address_space_is_one_range_and_one_cidr() {
        let r = Ranges::from_nets(&nets(&["0.0.0.0/1", "128.0.0.0/1", "::/0"]));
        assert_eq!(r.cidrs(), nets(&["0.0.0.0/0", "::/0"]));
        assert!(r.covers(&"203.0.113.0/24".parse().unwrap()));
    }

    fn arb_net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (any::<u32>(), 8u8..=32)
                .prop_map(|(a, l)| IpNet::new(IpAddr::V4(a.into()), l).unwrap().trunc()),
            (any::<u128>(), 16u8..=128)
                .prop_map(|(a, l)| IpNet::new(IpAddr::V6(a.into()), l).unwrap().trunc()),
        ]
    }

    proptest! {
        /// Any address is in the result exactly when it is in a listed network and in
        /// no except network; the CIDRs cover the same addresses.
        #[test]
        fn ranges_hold_exactly_the_listed_addresses_without_the_exceptions(
            listed in proptest::collection::vec(arb_net(), 0..20),
            except in proptest::collection::vec(arb_net(), 0..5),
            probes in proptest::collection::vec(arb_net(), 0..40),
        ) {
            let r = Ranges::from_nets(&listed).minus(&Ranges::from_nets(&except));
            let again = Ranges::from_nets(&r.cidrs());
            let mut addrs: Vec<IpAddr> = probes.iter().map(|n| n.addr()).collect();
            addrs.extend(listed.iter().chain(&except).flat_map(|n| [n.network(), n.broadcast()]));
            for a in addrs {
                let want = listed.iter().any(|n| n.contains(&a)) && !except.iter().any(|n| n.contains(&a));
                prop_assert_eq!(r.contains(a), want, "{}", a);
                prop_assert_eq!(again.contains(a), want, "{} via cidrs", a);
            }
        }
    }
}
