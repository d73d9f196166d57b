//! The nftables enforcer, through netlink (nftnl), never an `nft` process per ban.
//!
//! saslguard owns one table (default `inet saslguard`) and nothing outside it. In it:
//! sets `addr4`/`addr6` (addresses) and `net4`/`net6` (prefixes, interval sets), all
//! with `flags timeout` so the kernel drops each ban on time even when saslguard is not
//! running; a set `ports`; and a chain on the input hook whose rules drop (or reject
//! with a TCP reset) packets from banned sources to those ports (or to every port).
//!
//! - `setup` is idempotent: table, chain and sets are created when missing; the chain's
//!   rules and the port set are replaced in one transaction; bans are never flushed.
//! - `ban` sends all elements in one batch; an element already there is extended (when
//!   the new ban is longer). A batch the kernel refuses is retried element by element,
//!   and the result is read back from the kernel.
//! - `unban` of an element the kernel already expired is not an error.
//! - `reconcile` re-adds, with their remaining time, the bans the caller says should be
//!   active (after a reboot or `nft flush ruleset`).
//!
//! The unsafe parts (set flags, element timeouts, reading elements) are in nft_sys.rs.

use super::nft_sys::{self, FlushSet, Port, RawElem, bytemuck_bytes};
use super::{Applied, EnforceError};
use crate::ban::Decision;
use crate::time::Timestamp;
use ipnet::IpNet;
use nftnl::expr::{RejectionType, Verdict};
use nftnl::set::Set;
use nftnl::{
    Batch, Chain, FinalizedBatch, Hook, MsgType, Policy, ProtoFamily, Rule, Table, nft_expr,
};
use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const CHAIN: &CStr = c"input";
const ADDR4: &CStr = c"addr4";
const ADDR6: &CStr = c"addr6";
const NET4: &CStr = c"net4";
const NET6: &CStr = c"net6";
const PORTS: &CStr = c"ports";
const ALLOW4: &CStr = c"allow4";
const ALLOW6: &CStr = c"allow6";

/// What traffic from a set's addresses a rule matches.
#[derive(Clone, Copy)]
enum Traffic<'s, 'b> {
    Any,
    Tcp,
    TcpTo(&'s Set<'b, Port>),
}

/// A block's three sets in a batch, with its ports.
type BlockSetsOf<'a> = (
    Set<'a, Ipv4Addr>,
    Set<'a, Ipv6Addr>,
    Set<'a, Port>,
    &'a Vec<u16>,
);

/// A block's sets: its IPv4 and IPv6 networks (interval sets) and its ports.
struct BlockSets {
    v4: CString,
    v6: CString,
    ports: CString,
}

fn block_sets(name: &str) -> BlockSets {
    // Block names are letters, digits, `_` and `-` (checked with the configuration).
    let c = |prefix: &str| CString::new(format!("{prefix}_{name}")).unwrap_or_default();
    BlockSets {
        v4: c("b4"),
        v6: c("b6"),
        ports: c("bp"),
    }
}

/// Adds inclusive ranges to an interval set: each start, and the end after it (none at
/// the top of the address space).
fn add_ranges<K>(set: &mut Set<'_, K>, ranges: &[(Vec<u8>, Option<Vec<u8>>)]) {
    for (start, end) in ranges {
        nft_sys::add_elem(set, start, None, false);
        if let Some(end) = end {
            nft_sys::add_elem(set, end, None, true);
        }
    }
}

fn v4_keys(r: &crate::block::Ranges) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    r.v4()
        .map(|(a, b)| {
            let end = u32::from(b)
                .checked_add(1)
                .map(|e| e.to_be_bytes().to_vec());
            (a.octets().to_vec(), end)
        })
        .collect()
}

fn v6_keys(r: &crate::block::Ranges) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    r.v6()
        .map(|(a, b)| {
            let end = u128::from(b)
                .checked_add(1)
                .map(|e| e.to_be_bytes().to_vec());
            (a.octets().to_vec(), end)
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nftables table {table}: {op}: {source}")]
    Netlink {
        table: String,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("nftables table {table}: {0}", table = .1)]
    Other(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftConfig {
    /// Table name in the `inet` family.
    pub table: String,
    /// TCP ports to protect; empty: all traffic from banned sources.
    pub ports: Vec<u16>,
    /// Reject TCP with a reset instead of dropping.
    pub reject: bool,
    /// `[[block]]`s: name and ports; each has its sets and rules in the table.
    pub blocks: Vec<(String, Vec<u16>)>,
}

impl Default for NftConfig {
    fn default() -> Self {
        NftConfig {
            table: "saslguard".into(),
            ports: vec![25, 465, 587, 110, 143, 993, 995, 4190],
            reject: false,
            blocks: Vec::new(),
        }
    }
}

/// A ban in the kernel, with the time it has left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    pub target: IpNet,
    pub remaining_ms: u64,
}

/// What `ban` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BanReport {
    pub added: usize,
    pub extended: usize,
    /// Already there with at least as much time left.
    pub kept: usize,
    /// The batch failed and elements were sent one by one.
    pub retried: bool,
    pub failed: Vec<(IpNet, String)>,
}

pub struct Nft {
    cfg: NftConfig,
    table_name: CString,
    /// When the chain was first seen missing a rule; rebuilt only if it still is a
    /// second later (an admin's change in several steps is not fought mid-way).
    incomplete_since: Option<std::time::Instant>,
}

fn set_of(net: &IpNet) -> &'static CStr {
    match (net, net.prefix_len() == net.max_prefix_len()) {
        (IpNet::V4(_), true) => ADDR4,
        (IpNet::V6(_), true) => ADDR6,
        (IpNet::V4(_), false) => NET4,
        (IpNet::V6(_), false) => NET6,
    }
}

/// The element keys of a ban: one address, or an interval start and (exclusive) end;
/// no end for a prefix that reaches the top of the address space.
fn keys(net: &IpNet) -> (Vec<u8>, Option<Vec<u8>>) {
    let bytes = |a: IpAddr| match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    };
    let start = bytes(net.network());
    if net.prefix_len() == net.max_prefix_len() {
        return (start, None);
    }
    let end = num(net.broadcast()).checked_add(1).and_then(|e| match net {
        IpNet::V4(_) => u32::try_from(e)
            .ok()
            .map(|e| IpAddr::from(Ipv4Addr::from(e))),
        IpNet::V6(_) => Some(IpAddr::from(Ipv6Addr::from(e))),
    });
    (start, end.map(bytes))
}

/// Adds a ban's elements to `set`: the start (with the timeout, if any) and, for a
/// prefix, its interval end (never with a timeout: the kernel refuses that, EINVAL).
fn add_ban(set: &mut Set<'_, Ipv4Addr>, net: &IpNet, timeout_ms: Option<u64>) {
    let (start, end) = keys(net);
    nft_sys::add_elem(set, &start, timeout_ms, false);
    if let Some(end) = &end {
        nft_sys::add_elem(set, end, None, true);
    }
}

fn addr_of(key: &[u8]) -> Option<IpAddr> {
    match key.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(key).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(key).ok()?)),
        _ => None,
    }
}

/// Intervals back to prefixes: each start with the smallest end above it.
fn intervals(elems: &[RawElem]) -> Vec<Active> {
    let mut ends: Vec<(u128, u64)> = elems
        .iter()
        .filter(|e| e.interval_end)
        .filter_map(|e| Some((num(addr_of(&e.key)?), e.expires_ms)))
        .collect();
    ends.sort_unstable();
    let mut out = Vec::new();
    for e in elems.iter().filter(|e| !e.interval_end) {
        let Some(start) = addr_of(&e.key) else {
            continue;
        };
        let s = num(start);
        let bits = if start.is_ipv4() { 32 } else { 128 };
        // The last address of the interval: before the next end, or the top of the
        // address space for an interval with no end (`8000::/1`, `ffff::/16`); counted
        // as a last address, not a size, so the top of IPv6 does not overflow.
        let top = if bits == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        let last = ends
            .iter()
            .find(|(x, _)| *x > s)
            .map_or(top, |(x, _)| *x - 1);
        let host_bits = 128 - (last - s).leading_zeros();
        let len = (bits - host_bits.min(bits)) as u8;
        if let Ok(net) = IpNet::new(start, len) {
            out.push(Active {
                target: net,
                remaining_ms: e.expires_ms,
            });
        }
    }
    out
}

fn num(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

impl Nft {
    pub fn new(cfg: NftConfig) -> Result<Nft, NftError> {
        let table_name = CString::new(cfg.table.clone()).map_err(|_| {
            NftError::Other(
                "the table name contains a NUL byte".into(),
                cfg.table.clone(),
            )
        })?;
        if cfg.table.is_empty() || cfg.table.len() > 255 {
            return Err(NftError::Other("bad table name".into(), cfg.table.clone()));
        }
        Ok(Nft {
            cfg,
            table_name,
            incomplete_since: None,
        })
    }

    fn nl(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> NftError + '_ {
        move |source| NftError::Netlink {
            table: self.cfg.table.clone(),
            op,
            source,
        }
    }

    fn table(&self) -> Table {
        Table::new(&self.table_name, ProtoFamily::Inet)
    }

    /// Creates the table, chain and sets when missing; replaces the chain's rules and
    /// the port set. Bans already in the sets stay.
    pub fn setup(&self) -> Result<(), NftError> {
        let table = self.table();
        let mut chain = Chain::new(CHAIN, &table);
        chain.set_hook(Hook::In, 0);
        chain.set_policy(Policy::Accept);
        let addr4 = Set::<Ipv4Addr>::new_named(ADDR4, 1, &table, ProtoFamily::Inet);
        let addr6 = Set::<Ipv6Addr>::new_named(ADDR6, 2, &table, ProtoFamily::Inet);
        let net4 = Set::<Ipv4Addr>::new_named(NET4, 3, &table, ProtoFamily::Inet);
        let net6 = Set::<Ipv6Addr>::new_named(NET6, 4, &table, ProtoFamily::Inet);
        let mut ports = Set::<Port>::new_named(PORTS, 5, &table, ProtoFamily::Inet);
        let allow4 = Set::<Ipv4Addr>::new_named(ALLOW4, 6, &table, ProtoFamily::Inet);
        let allow6 = Set::<Ipv6Addr>::new_named(ALLOW6, 7, &table, ProtoFamily::Inet);
        nft_sys::set_flags(&allow4, false, true);
        nft_sys::set_flags(&allow6, false, true);
        let names: Vec<(BlockSets, &Vec<u16>)> = self
            .cfg
            .blocks
            .iter()
            .map(|(n, p)| (block_sets(n), p))
            .collect();
        let mut block_sets: Vec<BlockSetsOf<'_>> = Vec::new();
        for (i, (n, p)) in names.iter().enumerate() {
            let id = 100 + 3 * i as u32;
            let v4 = Set::<Ipv4Addr>::new_named(&n.v4, id, &table, ProtoFamily::Inet);
            let v6 = Set::<Ipv6Addr>::new_named(&n.v6, id + 1, &table, ProtoFamily::Inet);
            let bp = Set::<Port>::new_named(&n.ports, id + 2, &table, ProtoFamily::Inet);
            nft_sys::set_flags(&v4, false, true);
            nft_sys::set_flags(&v6, false, true);
            block_sets.push((v4, v6, bp, p));
        }
        nft_sys::set_flags(&addr4, true, false);
        nft_sys::set_flags(&addr6, true, false);
        nft_sys::set_flags(&net4, true, true);
        nft_sys::set_flags(&net6, true, true);
        // Batch 1: everything that may already exist, created only when missing.
        let mut batch = Batch::new();
        batch.add(&table, MsgType::Add);
        batch.add(&chain, MsgType::Add);
        batch.add(&addr4, MsgType::Add);
        batch.add(&addr6, MsgType::Add);
        batch.add(&net4, MsgType::Add);
        batch.add(&net6, MsgType::Add);
        batch.add(&ports, MsgType::Add);
        batch.add(&allow4, MsgType::Add);
        batch.add(&allow6, MsgType::Add);
        for (v4, v6, bp, _) in &block_sets {
            batch.add(v4, MsgType::Add);
            batch.add(v6, MsgType::Add);
            batch.add(bp, MsgType::Add);
        }
        self.send(batch.finalize())
            .map_err(self.nl("create table, chain and sets"))?;
        // Batch 2, one transaction: the port set's content and the chain's rules.
        let mut batch = Batch::new();
        batch.add(
            &FlushSet::new(libc::NFPROTO_INET as u32, &self.table_name, PORTS),
            MsgType::Del,
        );
        for p in &self.cfg.ports {
            nft_sys::add_elem(&mut ports, &p.to_be_bytes(), None, false);
        }
        if !self.cfg.ports.is_empty() {
            batch.add_iter(ports.elems_iter(), MsgType::Add);
        }
        for ((_, _, bp, ports), (n, _)) in block_sets.iter_mut().zip(&names) {
            batch.add(
                &FlushSet::new(libc::NFPROTO_INET as u32, &self.table_name, &n.ports),
                MsgType::Del,
            );
            for p in ports.iter() {
                nft_sys::add_elem(bp, &p.to_be_bytes(), None, false);
            }
            if !ports.is_empty() {
                batch.add_iter(bp.elems_iter(), MsgType::Add);
            }
        }
        // A rule with no handle, deleted: flushes the chain.
        batch.add(&Rule::new(&chain), MsgType::Del);
        // First the allowlist and this host's own addresses: they pass whatever a ban
        // or a block says.
        for (set, v6) in [(&allow4 as &dyn LookupSet, false), (&allow6, true)] {
            batch.add(
                &self.rule(&chain, set, v6, Traffic::Any, &Verdict::Accept),
                MsgType::Add,
            );
        }
        let sets: [(&dyn LookupSet, bool); 4] = [
            (&addr4, false),
            (&net4, false),
            (&addr6, true),
            (&net6, true),
        ];
        for (set, v6) in sets {
            for rule in self.rules(&chain, set, v6, &ports) {
                batch.add(&rule, MsgType::Add);
            }
        }
        // Then the blocks: their own ports (never "all" unless the block says so).
        let verdict = if self.cfg.reject {
            Verdict::Reject(RejectionType::TcpRst)
        } else {
            Verdict::Drop
        };
        for (v4, v6, bp, ports) in &block_sets {
            let t = if ports.is_empty() {
                Traffic::Any
            } else {
                Traffic::TcpTo(bp)
            };
            batch.add(&self.rule(&chain, v4, false, t, &verdict), MsgType::Add);
            batch.add(&self.rule(&chain, v6, true, t, &verdict), MsgType::Add);
        }
        self.send(batch.finalize())
            .map_err(self.nl("replace rules"))
    }

    /// One rule: the source address in `set` and `traffic`, counted, then `verdict`.
    fn rule<'a>(
        &self,
        chain: &'a Chain<'a>,
        set: &dyn LookupSet,
        v6: bool,
        traffic: Traffic<'_, '_>,
        verdict: &Verdict,
    ) -> Rule<'a> {
        let mut r = Rule::new(chain);
        r.add_expr(&nft_expr!(meta nfproto));
        if v6 {
            r.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV6 as u8));
            r.add_expr(&nft_expr!(payload ipv6 saddr));
        } else {
            r.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV4 as u8));
            r.add_expr(&nft_expr!(payload ipv4 saddr));
        }
        set.add_lookup(&mut r);
        if let Traffic::Tcp | Traffic::TcpTo(_) = traffic {
            r.add_expr(&nft_expr!(meta l4proto));
            r.add_expr(&nft_expr!(cmp == libc::IPPROTO_TCP as u8));
        }
        if let Traffic::TcpTo(ports) = traffic {
            r.add_expr(&nft_expr!(payload tcp dport));
            r.add_expr(&nft_expr!(lookup ports));
        }
        r.add_expr(&nft_expr!(counter));
        r.add_expr(verdict);
        r
    }

    /// Replaces the networks of the block `name` (its sets exist after `setup`) in one
    /// transaction: the kernel switches from the old content to the new one, with no
    /// moment where the set is empty or half loaded.
    pub fn load_block(&self, name: &str, ranges: &crate::block::Ranges) -> Result<(), NftError> {
        let n = block_sets(name);
        self.replace_ranges(&n.v4, &n.v6, ranges)
            .map_err(self.nl("load a block"))
    }

    /// Packets each block's rules refused since they were last put in place (a rebuilt
    /// or reloaded chain starts again from 0), by block name.
    pub fn block_counters(&self) -> Result<BTreeMap<String, u64>, NftError> {
        let rules = self.rule_counters()?;
        let mut out = BTreeMap::new();
        for r in rules {
            let Some(set) = r.set else { continue };
            if let Some(name) = set.strip_prefix("b4_").or_else(|| set.strip_prefix("b6_")) {
                *out.entry(name.to_string()).or_insert(0) += r.packets;
            }
        }
        Ok(out)
    }

    /// Replaces the networks that pass every ban and block (the allowlist and this
    /// host's own addresses), in one transaction.
    pub fn set_allow(&self, nets: &[IpNet]) -> Result<(), NftError> {
        let ranges = crate::block::Ranges::from_nets(nets);
        self.replace_ranges(ALLOW4, ALLOW6, &ranges)
            .map_err(self.nl("load the allowlist"))
    }

    fn replace_ranges(
        &self,
        v4: &CStr,
        v6: &CStr,
        ranges: &crate::block::Ranges,
    ) -> std::io::Result<()> {
        let table = self.table();
        let mut s4 = Set::<Ipv4Addr>::new_named(v4, 0, &table, ProtoFamily::Inet);
        let mut s6 = Set::<Ipv6Addr>::new_named(v6, 0, &table, ProtoFamily::Inet);
        add_ranges(&mut s4, &v4_keys(ranges));
        add_ranges(&mut s6, &v6_keys(ranges));
        let mut batch = Batch::new();
        let family = libc::NFPROTO_INET as u32;
        batch.add(&FlushSet::new(family, &self.table_name, v4), MsgType::Del);
        batch.add(&FlushSet::new(family, &self.table_name, v6), MsgType::Del);
        let (n4, n6) = ranges.len();
        if n4 > 0 {
            batch.add_iter(s4.elems_iter(), MsgType::Add);
        }
        if n6 > 0 {
            batch.add_iter(s6.elems_iter(), MsgType::Add);
        }
        self.send(batch.finalize())
    }

    fn rules<'a>(
        &self,
        chain: &'a Chain<'a>,
        set: &dyn LookupSet,
        v6: bool,
        ports: &Set<'_, Port>,
    ) -> Vec<Rule<'a>> {
        let mut out = Vec::new();
        let verdicts: Vec<(bool, Verdict)> = match (self.cfg.reject, self.cfg.ports.is_empty()) {
            (false, _) => vec![(!self.cfg.ports.is_empty(), Verdict::Drop)],
            (true, false) => vec![(true, Verdict::Reject(RejectionType::TcpRst))],
            // Reject TCP with a reset, drop everything else.
            (true, true) => vec![
                (true, Verdict::Reject(RejectionType::TcpRst)),
                (false, Verdict::Drop),
            ],
        };
        for (tcp, verdict) in verdicts {
            let m = match (tcp, self.cfg.ports.is_empty()) {
                (false, _) => Traffic::Any,
                (true, true) => Traffic::Tcp,
                (true, false) => Traffic::TcpTo(ports),
            };
            out.push(self.rule(chain, set, v6, m, &verdict));
        }
        out
    }

    fn send(&self, batch: FinalizedBatch) -> std::io::Result<()> {
        let socket = mnl::Socket::new(mnl::Bus::Netfilter)?;
        let portid = socket.portid();
        // One sendmsg for the whole batch: the kernel must see BEGIN and END in one
        // message, and mnl's send_all sends each batch page on its own.
        let mut data = Vec::new();
        for page in batch.iter() {
            data.extend_from_slice(page);
        }
        nft_sys::size_buffers(&socket, data.len() + 65_536, 4 << 20)?;
        if socket.send(&data)? < data.len() {
            return Err(std::io::Error::other("netlink sent part of the batch"));
        }
        let mut buffer = vec![0u32; nftnl::nft_nlmsg_maxsize() as usize / 4 + 1];
        let mut expected = batch.sequence_numbers();
        let mut first_err = None;
        while !expected.is_empty() {
            let n = socket.recv_raw(bytemuck_bytes(&mut buffer))?;
            if n == 0 {
                break;
            }
            for message in mnl::NlMessages::new(&bytemuck_bytes(&mut buffer)[..n]) {
                let message = message?;
                let Some(seq) = expected.next() else { break };
                if let Err(e) = mnl::cb_run(message, seq, portid) {
                    // The kernel aborts the whole transaction; it acknowledges up to the
                    // failing message.
                    first_err.get_or_insert(e);
                    expected = 0..0;
                    break;
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn dump(&self, set: &CStr) -> Result<Vec<RawElem>, NftError> {
        let socket =
            mnl::Socket::new(mnl::Bus::Netfilter).map_err(self.nl("open netlink socket"))?;
        nft_sys::dump_elems(&socket, libc::NFPROTO_INET as u32, &self.table_name, set)
            .map_err(self.nl("read set"))
    }

    /// The chain's rules with the set each looks up and its counter.
    fn rule_counters(&self) -> Result<Vec<nft_sys::RuleCounter>, NftError> {
        let socket =
            mnl::Socket::new(mnl::Bus::Netfilter).map_err(self.nl("open netlink socket"))?;
        nft_sys::dump_rule_counters(&socket, libc::NFPROTO_INET as u32, &self.table_name, CHAIN)
            .map_err(self.nl("read rules"))
    }

    /// Every ban in the kernel with its remaining time.
    pub fn list(&self) -> Result<Vec<Active>, NftError> {
        let mut out = Vec::new();
        for set in [ADDR4, ADDR6] {
            for e in self.dump(set)? {
                if let Some(a) = addr_of(&e.key) {
                    out.push(Active {
                        target: IpNet::from(a),
                        remaining_ms: e.expires_ms,
                    });
                }
            }
        }
        for set in [NET4, NET6] {
            out.extend(intervals(&self.dump(set)?));
        }
        out.sort_by_key(|a| a.target);
        Ok(out)
    }

    /// Adds bans, `ms` each, in one batch; retries one by one if the batch fails, then
    /// reads the sets back.
    pub fn ban(&self, bans: &[(IpNet, u64)]) -> Result<BanReport, NftError> {
        let current: BTreeMap<IpNet, u64> = self
            .list()?
            .into_iter()
            .map(|a| (a.target, a.remaining_ms))
            .collect();
        let mut report = BanReport::default();
        let mut work: Vec<(IpNet, u64, bool)> = Vec::new();
        for &(net, ms) in bans {
            let net = net.trunc();
            match current.get(&net) {
                Some(&left) if left >= ms => report.kept += 1,
                Some(_) => work.push((net, ms, true)),
                None => work.push((net, ms, false)),
            }
        }
        if work.is_empty() {
            return Ok(report);
        }
        let started = std::time::Instant::now();
        let sent = self.send(self.element_batch(&work));
        tracing::debug!(
            elements = work.len(),
            ms = started.elapsed().as_millis() as u64,
            "nftables batch committed"
        );
        if let Err(e) = sent {
            tracing::warn!(table = %self.cfg.table, error = %e, "nftables batch refused; retrying element by element");
            report.retried = true;
            for item in &work {
                if let Err(e) = self.send(self.element_batch(std::slice::from_ref(item))) {
                    report.failed.push((item.0, e.to_string()));
                }
            }
        }
        // Read back. A hash set that just grew is resized by the kernel in the background,
        // and a dump during the resize can skip elements (seen after 10,000 inserts): an
        // element that looks missing is looked for again before it counts as failed.
        let mut now: BTreeMap<IpNet, u64> = BTreeMap::new();
        for attempt in 0..5 {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(20 << attempt));
            }
            now.extend(self.list()?.into_iter().map(|a| (a.target, a.remaining_ms)));
            tracing::debug!(
                attempt,
                ms = started.elapsed().as_millis() as u64,
                "nftables sets read back"
            );
            let failed = |n: &IpNet| report.failed.iter().any(|(f, _)| f == n);
            if work
                .iter()
                .all(|(n, _, _)| now.contains_key(n) || failed(n))
            {
                break;
            }
        }
        for (net, _, existed) in &work {
            if report.failed.iter().any(|(f, _)| f == net) {
                continue;
            }
            if now.contains_key(net) {
                if *existed {
                    report.extended += 1
                } else {
                    report.added += 1
                }
            } else {
                report
                    .failed
                    .push((*net, "not in the set after the batch".into()));
            }
        }
        Ok(report)
    }

    fn element_batch(&self, work: &[(IpNet, u64, bool)]) -> FinalizedBatch {
        let table = self.table();
        let mut adds: BTreeMap<&CStr, Set<'_, Ipv4Addr>> = BTreeMap::new();
        let mut dels: BTreeMap<&CStr, Set<'_, Ipv4Addr>> = BTreeMap::new();
        for &(net, ms, existed) in work {
            let name = set_of(&net);
            let new_set = || Set::new_named(name, 0, &table, ProtoFamily::Inet);
            if existed {
                add_ban(dels.entry(name).or_insert_with(new_set), &net, None);
            }
            add_ban(
                adds.entry(name).or_insert_with(new_set),
                &net,
                Some(ms.max(1)),
            );
        }
        let mut batch = Batch::new();
        for s in dels.values() {
            batch.add_iter(s.elems_iter(), MsgType::Del);
        }
        for s in adds.values() {
            batch.add_iter(s.elems_iter(), MsgType::Add);
        }
        batch.finalize()
    }

    /// Removes bans. One the kernel no longer has (expired) is not an error.
    pub fn unban(&self, targets: &[IpNet]) -> Result<usize, NftError> {
        let current: Vec<IpNet> = self.list()?.into_iter().map(|a| a.target).collect();
        let present: Vec<(IpNet, u64, bool)> = targets
            .iter()
            .map(|t| t.trunc())
            .filter(|t| current.contains(t))
            .map(|t| (t, 0, true))
            .collect();
        if present.is_empty() {
            return Ok(0);
        }
        let table = self.table();
        let mut dels: BTreeMap<&CStr, Set<'_, Ipv4Addr>> = BTreeMap::new();
        for (net, _, _) in &present {
            let name = set_of(net);
            let d = dels
                .entry(name)
                .or_insert_with(|| Set::new_named(name, 0, &table, ProtoFamily::Inet));
            add_ban(d, net, None);
        }
        let mut batch = Batch::new();
        for s in dels.values() {
            batch.add_iter(s.elems_iter(), MsgType::Del);
        }
        match self.send(batch.finalize()) {
            Ok(()) => Ok(present.len()),
            // Expired between the listing and the batch: gone either way.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(present.len()),
            Err(e) => Err(self.nl("delete elements")(e)),
        }
    }

    /// Makes the kernel hold every ban in `want` that has time left at `now`, with the
    /// time it has left. A ban the kernel refuses is in the report's `failed`, not an
    /// error: one bad ban must not keep the others (or the daemon) out.
    pub fn reconcile(
        &self,
        want: &[(IpNet, Timestamp)],
        now: Timestamp,
    ) -> Result<BanReport, NftError> {
        self.setup()?;
        let bans: Vec<(IpNet, u64)> = want
            .iter()
            .filter(|(_, until)| *until > now)
            .map(|(t, until)| (*t, (until.0 - now.0) as u64))
            .collect();
        self.ban(&bans)
    }

    /// True when saslguard's table is in the kernel (it is gone after `nft flush
    /// ruleset`, which `systemctl reload nftables` does).
    pub fn table_present(&self) -> Result<bool, NftError> {
        // The port set is the smallest object in the table.
        match self.dump(PORTS) {
            Ok(_) => Ok(true),
            Err(NftError::Netlink { source, .. })
                if source.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// True when the chain has a rule for every set it should look up: the allowlist,
    /// the bans and each block. A rule deleted by hand, a chain flushed, or rules
    /// written by `saslguard nft setup` without the blocks are found here and put back.
    pub fn rules_complete(&self) -> Result<bool, NftError> {
        let rules = match self.rule_counters() {
            Ok(r) => r,
            Err(NftError::Netlink { source, .. })
                if source.raw_os_error() == Some(libc::ENOENT) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let seen: std::collections::BTreeSet<String> =
            rules.into_iter().filter_map(|r| r.set).collect();
        let mut want: Vec<String> = [ALLOW4, ALLOW6, ADDR4, NET4, ADDR6, NET6]
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        for (name, _) in &self.cfg.blocks {
            want.push(format!("b4_{name}"));
            want.push(format!("b6_{name}"));
        }
        Ok(want.iter().all(|w| seen.contains(w)))
    }

    /// Deletes saslguard's table with its sets and rules (`saslguard nft reset`).
    /// Returns false when there was no table.
    pub fn reset(&self) -> Result<bool, NftError> {
        let mut batch = Batch::new();
        batch.add(&self.table(), MsgType::Del);
        match self.send(batch.finalize()) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(self.nl("delete table")(e)),
        }
    }
}

/// Sets a rule can look up, whatever their key type.
trait LookupSet {
    fn add_lookup(&self, rule: &mut Rule<'_>);
}

impl<K> LookupSet for Set<'_, K> {
    fn add_lookup(&self, rule: &mut Rule<'_>) {
        rule.add_expr(&nft_expr!(lookup self));
    }
}

impl super::Enforcer for Nft {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn describe(&self) -> String {
        format!("table inet {}", self.cfg.table)
    }

    fn reconcile(&mut self, active: &[Decision], now: Timestamp) -> Result<Applied, EnforceError> {
        let want: Vec<(IpNet, Timestamp)> = active.iter().map(|d| (d.target, d.until)).collect();
        let r = Nft::reconcile(self, &want, now).map_err(failed)?;
        Ok(Applied { refused: r.failed })
    }

    fn ban(&mut self, decisions: &[Decision], now: Timestamp) -> Result<Applied, EnforceError> {
        // The kernel's timeout counts from the moment the element goes in.
        let bans: Vec<(IpNet, u64)> = decisions
            .iter()
            .filter(|d| d.until > now)
            .map(|d| (d.target, (d.until.0 - now.0).max(1) as u64))
            .collect();
        if bans.is_empty() {
            return Ok(Applied::default());
        }
        let r = Nft::ban(self, &bans).map_err(failed)?;
        Ok(Applied { refused: r.failed })
    }

    fn unban(&mut self, targets: &[IpNet]) -> Result<usize, EnforceError> {
        Nft::unban(self, targets).map_err(failed)
    }

    fn intact(&mut self) -> Result<bool, EnforceError> {
        if !self.table_present().map_err(failed)? {
            self.incomplete_since = None;
            return Ok(false);
        }
        if self.rules_complete().map_err(failed)? {
            self.incomplete_since = None;
            return Ok(true);
        }
        match self.incomplete_since {
            None => {
                self.incomplete_since = Some(std::time::Instant::now());
                Ok(true)
            }
            Some(t) if t.elapsed() >= std::time::Duration::from_secs(1) => {
                self.incomplete_since = None;
                Ok(false)
            }
            Some(_) => Ok(true),
        }
    }

    fn repair(&mut self) -> Result<(), EnforceError> {
        self.setup().map_err(failed)
    }

    fn retire(&mut self, _active: &[IpNet]) -> Result<(), EnforceError> {
        self.reset().map(|_| ()).map_err(failed)
    }

    fn block(&mut self, blocks: &[crate::block::Blocked]) -> Result<(), EnforceError> {
        let mut errors = Vec::new();
        for b in blocks {
            if !self.cfg.blocks.iter().any(|(n, _)| *n == b.name) {
                continue;
            }
            let started = std::time::Instant::now();
            match self.load_block(&b.name, &b.ranges) {
                Ok(()) => {
                    let (r4, r6) = b.ranges.len();
                    tracing::info!(
                        block = %b.name,
                        ranges_v4 = r4,
                        ranges_v6 = r6,
                        ms = started.elapsed().as_millis() as u64,
                        "block loaded"
                    );
                }
                Err(e) => errors.push(format!("block {}: {e}", b.name)),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(failed_msg(errors.join("; ")))
        }
    }

    fn allow(&mut self, nets: &[IpNet]) -> Result<(), EnforceError> {
        self.set_allow(nets).map_err(failed)
    }

    fn block_counters(&mut self) -> Result<BTreeMap<String, u64>, EnforceError> {
        Nft::block_counters(self).map_err(failed)
    }
}

fn failed_msg(m: String) -> EnforceError {
    EnforceError::failed("nftables", m)
}

fn failed(e: NftError) -> EnforceError {
    EnforceError::failed("nftables", e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The elements `add_ban` sends for `net`, as the kernel gives them back.
    fn elems(net: &str) -> Vec<RawElem> {
        let (start, end) = keys(&net.parse().unwrap());
        let mut v = vec![RawElem {
            key: start,
            expires_ms: 1000,
            interval_end: false,
        }];
        v.extend(end.map(|key| RawElem {
            key,
            expires_ms: 0,
            interval_end: true,
        }));
        v
    }

    #[test]
    fn prefixes_read_back_as_they_went_in_up_to_the_top_of_the_address_space() {
        for net in [
            "192.0.2.0/24",
            "128.0.0.0/1",
            "255.255.0.0/16",
            "2001:db8::/32",
            "8000::/1",
            "ffff::/16",
            "2001:db8::ff00/120",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120",
        ] {
            let back = intervals(&elems(net));
            assert_eq!(back.len(), 1, "{net}");
            assert_eq!(back[0].target.to_string(), net);
        }
    }
}
