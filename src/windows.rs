//! Sliding windows of failures per address and per prefix, in bounded memory.
//!
//! A rule "N failures within T" only ever needs the N most recent failure times of a
//! key: it fires when the N-th most recent is younger than T. So each key keeps a ring
//! of at most K times, K being the largest N of the rules of its scope, and the table
//! of keys is an LRU of fixed capacity. Worst case memory is therefore
//! `max_addresses × (K × 8 + ~60)` bytes for addresses and
//! `max_prefixes × (K × 16 + ~80)` for prefixes, whatever an attacker sprays: ten
//! million IPv6 addresses inside one /64 are one prefix entry and, at most,
//! `max_addresses` address entries, the least recently failing ones evicted first.
//! Keys whose newest failure is older than the longest rule window leave the table
//! ([`Windows::sweep`]): the bound is then on addresses that can still be banned.
//!
//! Pure: times come from the events, never from a clock.

use crate::addr::AddrKey;
use crate::time::Timestamp;
use ipnet::IpNet;
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::net::IpAddr;

/// The prefix an address belongs to for prefix rules.
pub fn prefix_of(addr: IpAddr, v4_len: u8, v6_len: u8) -> IpNet {
    let len = if addr.is_ipv4() { v4_len } else { v6_len };
    IpNet::new(addr, len)
        .map(|n| n.trunc())
        .unwrap_or_else(|_| IpNet::from(addr))
}

pub struct Windows {
    addr_depth: usize,
    prefix_depth: usize,
    /// Oldest first; two times inline in the table's entry (issue 17: most
    /// addresses fail once or twice, and a separate ring cost about 50 bytes more).
    addrs: crate::bounded::Lru<AddrKey, SmallVec<[i64; 2]>>,
    prefixes: crate::bounded::Lru<IpNet, VecDeque<(i64, u32)>>,
    /// Tells the addresses of a prefix apart by a 32-bit tag, under a key random per
    /// process: with a fixed key (it was the standard hasher's) an attacker could pick,
    /// offline, addresses of his prefix that share one tag and so never reach a prefix
    /// rule's `min_addresses`.
    tags: hashbrown::DefaultHashBuilder,
}

impl Windows {
    /// `addr_depth`/`prefix_depth`: the largest failure count of any rule of that scope
    /// (0 when there is no rule of that scope: nothing is kept for it).
    pub fn new(
        addr_depth: usize,
        prefix_depth: usize,
        max_addresses: usize,
        max_prefixes: usize,
    ) -> Windows {
        Windows {
            addr_depth,
            prefix_depth,
            addrs: crate::bounded::Lru::new(max_addresses),
            prefixes: crate::bounded::Lru::new(max_prefixes),
            tags: hashbrown::DefaultHashBuilder::default(),
        }
    }

    /// Records `count` failures of `addr` (and of `prefix`, when prefix rules exist).
    /// Returns the windows of both as they are now, for the rules to read without
    /// looking them up again.
    pub fn record(
        &mut self,
        addr: IpAddr,
        prefix: Option<IpNet>,
        time: Timestamp,
        count: u32,
    ) -> View<'_> {
        let n = (count as usize).min(self.addr_depth.max(self.prefix_depth));
        let mut view = View {
            addr_ring: None,
            prefix_ring: None,
        };
        if self.addr_depth > 0 {
            let ring = self.addrs.get_or_insert_mut(addr.into(), SmallVec::new);
            for _ in 0..n.min(self.addr_depth) {
                if ring.len() == self.addr_depth {
                    ring.remove(0);
                }
                ring.push(time.0);
            }
            view.addr_ring = Some(&*ring);
        }
        if let (Some(p), true) = (prefix, self.prefix_depth > 0) {
            let tag = self.tags.hash_one(AddrKey::from(addr)) as u32;
            let ring = self.prefixes.get_or_insert_mut(p, VecDeque::new);
            push_capped(ring, (time.0, tag), n, self.prefix_depth);
            view.prefix_ring = Some(&*ring);
        }
        view
    }

    /// True when `addr` has at least `n` failures, the oldest of them less than
    /// `within_ms` before `now`.
    pub fn address_hits(
        &self,
        addr: IpAddr,
        n: u32,
        within_ms: i64,
        now: Timestamp,
    ) -> Option<u32> {
        View {
            addr_ring: self.addrs.peek(&addr.into()),
            prefix_ring: None,
        }
        .address_hits(n, within_ms, now)
    }

    /// As [`Windows::address_hits`] for a prefix, also requiring the failures in the
    /// window to come from at least `min_addresses` distinct addresses.
    pub fn prefix_hits(
        &self,
        prefix: IpNet,
        n: u32,
        within_ms: i64,
        min_addresses: u32,
        now: Timestamp,
    ) -> Option<u32> {
        View {
            addr_ring: None,
            prefix_ring: self.prefixes.peek(&prefix),
        }
        .prefix_hits(n, within_ms, min_addresses, now)
    }

    /// Forgets the failures of every address and prefix inside `net` (an unban by
    /// hand: the admin let the client try again).
    pub fn forget(&mut self, net: IpNet) {
        let addrs: Vec<AddrKey> = self
            .addrs
            .iter()
            .map(|(a, _)| *a)
            .filter(|a| net.contains(&a.ip()))
            .collect();
        for a in addrs {
            self.addrs.pop(&a);
        }
        let prefixes: Vec<IpNet> = self
            .prefixes
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| net.contains(p) || p.contains(&net))
            .collect();
        for p in prefixes {
            self.prefixes.pop(&p);
        }
    }

    /// Drops the windows whose newest failure is `addr_span_ms` (addresses) or
    /// `prefix_span_ms` (prefixes) or more before `now`, the longest rule window of
    /// their scope: no rule can count them again, since the rules read the windows at
    /// the latest event time, never earlier. At most `max` of each; returns how many
    /// went.
    pub fn sweep(
        &mut self,
        now: Timestamp,
        addr_span_ms: i64,
        prefix_span_ms: i64,
        max: usize,
    ) -> usize {
        let gone = |t: i64, span: i64| now.0.saturating_sub(t) >= span;
        self.addrs
            .pop_oldest_while(max, |_, r| r.iter().all(|&t| gone(t, addr_span_ms)))
            + self
                .prefixes
                .pop_oldest_while(max, |_, r| r.iter().all(|&(t, _)| gone(t, prefix_span_ms)))
    }

    /// Forgets every window (the evictions so far stay counted).
    pub fn clear(&mut self) {
        let evicted = self.addrs.evicted();
        *self = Windows::new(
            self.addr_depth,
            self.prefix_depth,
            self.addrs.cap(),
            self.prefixes.cap(),
        );
        self.addrs.set_evicted(evicted);
    }

    /// Addresses and prefixes tracked now.
    pub fn len(&self) -> (usize, usize) {
        (self.addrs.len(), self.prefixes.len())
    }

    /// Address entries evicted to keep the bound.
    pub fn evicted(&self) -> u64 {
        self.addrs.evicted()
    }
}

/// Appends `n` copies of `item`, keeping only the newest `cap`.
fn push_capped<T: Copy>(ring: &mut VecDeque<T>, item: T, n: usize, cap: usize) {
    for _ in 0..n.min(cap) {
        if ring.len() == cap {
            ring.pop_front();
        }
        crate::bounded::ring_room_for_one(ring);
        ring.push_back(item);
    }
}

/// The windows of one address and of its prefix as [`Windows::record`] left them:
/// found once for all the rules a failure is checked against.
pub struct View<'a> {
    addr_ring: Option<&'a SmallVec<[i64; 2]>>,
    prefix_ring: Option<&'a VecDeque<(i64, u32)>>,
}

impl View<'_> {
    /// [`Windows::address_hits`] of the view's address.
    pub fn address_hits(&self, n: u32, within_ms: i64, now: Timestamp) -> Option<u32> {
        let ring = self.addr_ring?;
        hits(ring.iter().copied(), ring.len(), n, within_ms, now)
    }

    /// [`Windows::prefix_hits`] of the view's prefix.
    pub fn prefix_hits(
        &self,
        n: u32,
        within_ms: i64,
        min_addresses: u32,
        now: Timestamp,
    ) -> Option<u32> {
        let ring = self.prefix_ring?;
        let in_window = hits(ring.iter().map(|e| e.0), ring.len(), n, within_ms, now)?;
        let tags = ring.iter().rev().take(in_window as usize).map(|e| e.1);
        at_least_distinct(tags, min_addresses as usize).then_some(in_window)
    }
}

/// True when `tags` hold at least `want` distinct values. A rule asks for a few
/// addresses: those are counted as they come, and the count stops once it has them
/// (issue 17: a sorted copy of the window for every failure of a firing prefix); more
/// than [`FEW_ADDRESSES`] are counted on a sorted copy.
fn at_least_distinct(tags: impl Iterator<Item = u32>, want: usize) -> bool {
    if want == 0 {
        return true;
    }
    if want <= FEW_ADDRESSES {
        let mut seen: SmallVec<[u32; FEW_ADDRESSES]> = SmallVec::new();
        for t in tags {
            if !seen.contains(&t) {
                seen.push(t);
                if seen.len() >= want {
                    return true;
                }
            }
        }
        return false;
    }
    let mut all: Vec<u32> = tags.collect();
    all.sort_unstable();
    all.dedup();
    all.len() >= want
}

/// The most distinct addresses [`at_least_distinct`] counts without sorting.
const FEW_ADDRESSES: usize = 16;

/// The number of failures in the window when the rule fires.
fn hits(
    times: impl DoubleEndedIterator<Item = i64>,
    len: usize,
    n: u32,
    within_ms: i64,
    now: Timestamp,
) -> Option<u32> {
    let n = n as usize;
    if n == 0 || len < n {
        return None;
    }
    let in_window = times.rev().take_while(|&t| now.0 - t < within_ms).count();
    (in_window >= n).then_some(in_window as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_secs(s)
    }

    /// Addresses of one /64 whose tags collide under the standard hasher's fixed key
    /// (found here as an attacker would find them, offline) still count as two
    /// addresses for a prefix rule.
    #[test]
    fn addresses_picked_to_share_a_fixed_key_tag_are_still_told_apart() {
        use std::hash::{Hash, Hasher};
        let fixed = |a: IpAddr| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            a.hash(&mut h);
            h.finish() as u32
        };
        let mut seen = std::collections::HashMap::new();
        let (a, b) = (0u64..)
            .find_map(|i| {
                let a = IpAddr::V6(std::net::Ipv6Addr::from(
                    (0x2001_0db8_0001_0002u128 << 64) | u128::from(i),
                ));
                seen.insert(fixed(a), a).map(|b| (a, b))
            })
            .unwrap();
        assert_ne!(a, b);
        let prefix: IpNet = "2001:db8:1:2::/64".parse().unwrap();
        let mut tr = Windows::new(0, 2, 10, 10);
        tr.record(a, Some(prefix), t(0), 1);
        tr.record(b, Some(prefix), t(1), 1);
        assert_eq!(tr.prefix_hits(prefix, 2, 600_000, 2, t(1)), Some(2));
    }

    /// A sweep drops a window only once no rule can count it any more: at the longest
    /// rule window after its newest failure, not a millisecond before; a prefix goes
    /// with the newest failure of any of its addresses.
    #[test]
    fn a_sweep_drops_windows_only_past_the_longest_rule() {
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let p = prefix_of(a, 24, 64);
        let mut tr = Windows::new(5, 5, 10, 10);
        tr.record(a, Some(p), t(0), 1);
        tr.record(b, Some(p), t(100), 1);
        let day = 86_400_000;
        assert_eq!(tr.sweep(Timestamp(day - 1), day, day, usize::MAX), 0);
        assert_eq!(
            tr.address_hits(a, 1, day, Timestamp(day - 1)),
            Some(1),
            "still counts"
        );
        assert_eq!(tr.sweep(Timestamp(day), day, day, usize::MAX), 1);
        assert_eq!(tr.len(), (1, 1));
        assert_eq!(tr.address_hits(b, 1, day, Timestamp(day)), Some(1));
        assert_eq!(tr.prefix_hits(p, 1, day, 1, Timestamp(day)), Some(1));
        assert_eq!(
            tr.sweep(Timestamp(day + 100_000 - 1), day, day, usize::MAX),
            0
        );
        assert_eq!(tr.sweep(Timestamp(day + 100_000), day, day, usize::MAX), 2);
        assert_eq!(tr.len(), (0, 0));
        assert_eq!(tr.evicted(), 0, "a sweep is not an eviction");
    }

    #[test]
    fn window_edges_are_exclusive() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mut tr = Windows::new(5, 0, 10, 10);
        for s in [0, 100, 200, 300, 599] {
            tr.record(a, None, t(s), 1);
        }
        assert_eq!(tr.address_hits(a, 5, 600_000, t(599)), Some(5));
        let mut tr = Windows::new(5, 0, 10, 10);
        for s in [0, 100, 200, 300, 600] {
            tr.record(a, None, t(s), 1);
        }
        assert_eq!(tr.address_hits(a, 5, 600_000, t(600)), None);
    }

    #[test]
    fn distinct_addresses_are_counted_as_a_sorted_copy_counts_them() {
        // Windows of up to 60 tags drawn from a few or many values, and every count a
        // rule may ask for, on both sides of the bound where the count sorts.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..3_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 61) as usize;
            let spread = [1, 3, 17, 1 << 20][(x >> 8) as usize % 4];
            let tags: Vec<u32> = (0..len)
                .map(|i| ((x >> 16).wrapping_mul(i as u64 + 1) % spread) as u32)
                .collect();
            let mut sorted = tags.clone();
            sorted.sort_unstable();
            sorted.dedup();
            for want in 0..=40 {
                assert_eq!(
                    at_least_distinct(tags.iter().copied(), want),
                    sorted.len() >= want,
                    "{tags:?} {want}"
                );
            }
        }
    }

    #[test]
    fn prefix_needs_distinct_addresses() {
        let p = prefix_of("2001:db8:1:2::7".parse().unwrap(), 24, 64);
        assert_eq!(p.to_string(), "2001:db8:1:2::/64");
        let mut tr = Windows::new(0, 3, 10, 10);
        let one: IpAddr = "2001:db8:1:2::7".parse().unwrap();
        tr.record(one, Some(p), t(0), 3);
        assert_eq!(tr.prefix_hits(p, 3, 60_000, 2, t(0)), None);
        tr.record("2001:db8:1:2::8".parse().unwrap(), Some(p), t(1), 1);
        assert_eq!(tr.prefix_hits(p, 3, 60_000, 2, t(1)), Some(3));
    }

    #[test]
    fn bounded_under_spraying() {
        let mut tr = Windows::new(5, 5, 1000, 10);
        for i in 0..100_000u32 {
            let a = IpAddr::V6(std::net::Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                0,
                (i >> 16) as u16,
                i as u16,
            ));
            tr.record(a, Some(prefix_of(a, 24, 64)), t(i64::from(i)), 1);
        }
        assert_eq!(tr.len(), (1000, 1));
        assert_eq!(tr.evicted(), 99_000);
    }
}
