//! A small writer of MaxMind DB files (format 2.0), so tests build databases with
//! known networks instead of shipping someone else's. IPv6 tree (IPv4 networks under
//! ::/96, as MaxMind's own databases have them), 32-bit records.

use std::net::IpAddr;

pub enum V {
    Map(Vec<(&'static str, V)>),
    Str(String),
    U16(u16),
    U32(u32),
    U64(u64),
    Array(Vec<V>),
}

fn ctrl(out: &mut Vec<u8>, ty: u8, size: usize) {
    let (first, ext) = if ty <= 7 {
        (ty << 5, None)
    } else {
        (0, Some(ty - 7))
    };
    let (low, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, vec![])
    } else if size < 285 {
        (29, vec![(size - 29) as u8])
    } else if size < 65821 {
        (30, ((size - 285) as u16).to_be_bytes().to_vec())
    } else {
        (31, ((size - 65821) as u32).to_be_bytes()[1..].to_vec())
    };
    out.push(first | low);
    if let Some(e) = ext {
        out.push(e);
    }
    out.extend(extra);
}

fn uint(out: &mut Vec<u8>, ty: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    ctrl(out, ty, 8 - skip);
    out.extend(&bytes[skip..]);
}

fn encode(out: &mut Vec<u8>, v: &V) {
    match v {
        V::Str(s) => {
            ctrl(out, 2, s.len());
            out.extend(s.as_bytes());
        }
        V::U16(n) => uint(out, 5, u64::from(*n)),
        V::U32(n) => uint(out, 6, u64::from(*n)),
        V::U64(n) => uint(out, 9, *n),
        V::Map(kv) => {
            ctrl(out, 7, kv.len());
            for (k, v) in kv {
                encode(out, &V::Str(k.to_string()));
                encode(out, v);
            }
        }
        V::Array(xs) => {
            ctrl(out, 11, xs.len());
            for x in xs {
                encode(out, x);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Child {
    Empty,
    Node(usize),
    Data(usize),
}

/// Builds a database of `database_type` with `(network, record)` entries.
pub fn build(database_type: &str, entries: Vec<(&str, V)>) -> Vec<u8> {
    let mut nodes: Vec<[Child; 2]> = vec![[Child::Empty; 2]];
    let mut data = Vec::new();
    for (net, rec) in entries {
        let n: ipnet::IpNet = net.parse().expect("network");
        let (bits, len) = match n.network() {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 96 + n.prefix_len() as usize),
            IpAddr::V6(a) => (u128::from(a), n.prefix_len() as usize),
        };
        let offset = data.len();
        encode(&mut data, &rec);
        let mut node = 0;
        for depth in 0..len {
            let bit = ((bits >> (127 - depth)) & 1) as usize;
            if depth + 1 == len {
                nodes[node][bit] = Child::Data(offset);
            } else {
                node = match nodes[node][bit] {
                    Child::Node(i) => i,
                    _ => {
                        nodes.push([Child::Empty; 2]);
                        let i = nodes.len() - 1;
                        nodes[node][bit] = Child::Node(i);
                        i
                    }
                };
            }
        }
    }
    let count = nodes.len();
    let mut out = Vec::new();
    for n in &nodes {
        for c in n {
            let v = match *c {
                Child::Empty => count,
                Child::Node(i) => i,
                Child::Data(off) => count + 16 + off,
            };
            out.extend((v as u32).to_be_bytes());
        }
    }
    out.extend([0u8; 16]);
    out.extend(data);
    out.extend(b"\xAB\xCD\xEFMaxMind.com");
    encode(
        &mut out,
        &V::Map(vec![
            ("binary_format_major_version", V::U16(2)),
            ("binary_format_minor_version", V::U16(0)),
            ("build_epoch", V::U64(1_700_000_000)),
            ("database_type", V::Str(database_type.into())),
            (
                "description",
                V::Map(vec![("en", V::Str("saslguard test".into()))]),
            ),
            ("ip_version", V::U16(6)),
            ("languages", V::Array(vec![V::Str("en".into())])),
            ("node_count", V::U32(count as u32)),
            ("record_size", V::U16(32)),
        ]),
    );
    out
}

/// A country record as GeoLite2-Country has it; `None` for the country gives a
/// continent-only record (anycast networks, for example).
pub fn country(iso: Option<&str>, continent: &str) -> V {
    let mut kv = vec![(
        "continent",
        V::Map(vec![("code", V::Str(continent.into()))]),
    )];
    if let Some(c) = iso {
        kv.push(("country", V::Map(vec![("iso_code", V::Str(c.into()))])));
    }
    V::Map(kv)
}

pub fn asn(number: u32, org: &str) -> V {
    V::Map(vec![
        ("autonomous_system_number", V::U32(number)),
        ("autonomous_system_organization", V::Str(org.into())),
    ])
}

/// The country networks the GeoIP tests share: DE, CN, NL, a continent-only IPv6
/// network (anycast) and BR.
pub fn test_countries() -> Vec<(&'static str, V)> {
    vec![
        ("192.0.2.0/24", country(Some("DE"), "EU")),
        ("198.51.100.0/24", country(Some("CN"), "AS")),
        ("203.0.113.0/24", country(Some("NL"), "EU")),
        ("2001:db8:1::/48", country(Some("DE"), "EU")),
        ("2001:db8:2::/48", country(None, "EU")),
        ("2001:db8:3::/48", country(Some("BR"), "SA")),
    ]
}
