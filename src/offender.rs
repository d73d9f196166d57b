//! Offender records: what each failing address did, for `replay` and reports.
//!
//! Bounded like everything fed by attacker traffic: an LRU of `max_offenders`
//! records, each keeping at most [`MAX_USERS`] distinct user names. Evictions are
//! counted and reported, never silent.
//!
//! The table keeps each record compact (`Entry`, issue 17): a botnet gives it one
//! entry per address, most with one failure. Services, mechanisms and TLS postures
//! (a few dozen distinct names in a real log) are numbers into one list of names per
//! table; account names are numbers into another (up to a bound, then kept in the
//! entry); an entry's counts and names share one allocation of exactly their size
//! (`Lists`); the origin is out of line, absent without GeoIP. [`Offender`], the
//! record the store, the fleet and the reports exchange, is built from an entry when
//! asked for.

use crate::addr::AddrKey;
use crate::attempts::{Attempt, Outcome, UNKNOWN_POSTURE};
use crate::geo::Origin;
use crate::time::Timestamp;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::net::IpAddr;

pub const MAX_USERS: usize = 50;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Offender {
    pub address: IpAddr,
    pub failures: u64,
    pub first_failure: Timestamp,
    pub last_failure: Timestamp,
    pub services: Counts,
    pub mechanisms: Counts,
    pub users: Vec<String>,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub users_not_kept: u64,
    /// Failed attempts by TLS posture: `TLSv1.3 TLS_AES_256_GCM_SHA384`, `plaintext`,
    /// `TLS (cipher not logged)`, `unknown`.
    pub tls: Counts,
    /// Successful logins from this address after its first failure.
    pub logins_after_failure: u64,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub login_users: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub allowlisted: bool,
    /// Country and AS, when GeoIP databases are configured.
    #[serde(skip_serializing_if = "Origin::is_empty", default)]
    pub geo: Origin,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Counts by name (services, mechanisms, TLS postures): usually one to three entries,
/// so a sorted vector of exact size instead of a BTreeMap, whose every node reserves
/// room for eleven. Serialized as a JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts(Vec<(Box<str>, u64)>);

impl Counts {
    /// Where `key` is, or where it would go (the vector is kept sorted by key).
    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(key))
    }
    pub fn get(&self, key: &str) -> Option<&u64> {
        self.position(key).ok().map(|i| &self.0[i].1)
    }
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(k, v)| (&**k, *v))
    }
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| &**k)
    }
    pub fn values(&self) -> impl Iterator<Item = &u64> {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn bump(&mut self, key: &str, n: u64) {
        match self.position(key) {
            Ok(i) => self.0[i].1 += n,
            Err(i) => {
                self.0.reserve_exact(1);
                self.0.insert(i, (key.into(), n));
            }
        }
    }
}

impl Serialize for Counts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(&**k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = std::collections::BTreeMap::<String, u64>::deserialize(d)?;
        Ok(Counts(m.into_iter().map(|(k, v)| (k.into(), v)).collect()))
    }
}

/// Distinct service, mechanism and posture names kept per table. The names come from
/// the mail daemons' own words (a program name, a SASL mechanism, a TLS protocol and
/// cipher), a few dozen in a real log; past this bound, new names are counted under
/// [`OTHER_NAME`] rather than kept.
pub const MAX_NAMES: usize = 4096;
/// Where counts go once [`MAX_NAMES`] distinct names are kept.
pub const OTHER_NAME: &str = "other";

/// Distinct account names kept once per table, for entries to refer to by number:
/// botnets try the same few dozen to few thousand names from every address (issue 17:
/// 2.5 to 10 names per offender, 44 distinct in the realistic bench log). Past this
/// bound, or longer than [`MAX_SHARED_ACCOUNT_LEN`] bytes, a name is kept in the
/// entry's own list, as every name was before: nothing is lost, an attacker who fills
/// the table with names of his own only costs the entries their room. At most about
/// 16,384 * (64 + 40) bytes, 1.7 MB.
const MAX_SHARED_ACCOUNTS: usize = 16_384;
const MAX_SHARED_ACCOUNT_LEN: usize = 64;

/// Names kept once per table, each with a number: looked up at every counted failure,
/// so through hashbrown's seeded fast hash (as the address tables).
struct Names {
    list: Vec<Box<str>>,
    index: hashbrown::HashMap<Box<str>, u32>,
    max: usize,
}

impl Names {
    fn new(max: usize) -> Names {
        Names {
            list: Vec::new(),
            index: hashbrown::HashMap::default(),
            max,
        }
    }

    /// The number of `name` if it is kept.
    fn find(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    /// The number of `name`, kept from now on if it is new; None when it is new and
    /// the table is full.
    fn add(&mut self, name: &str) -> Option<u32> {
        if let Some(i) = self.find(name) {
            return Some(i);
        }
        if self.list.len() >= self.max {
            return None;
        }
        let i = self.list.len() as u32;
        self.list.push(name.into());
        self.index.insert(name.into(), i);
        Some(i)
    }

    fn name(&self, i: u32) -> Option<&str> {
        self.list.get(i as usize).map(|n| &**n)
    }
}

/// The service, mechanism and posture names of a table: past [`MAX_NAMES`], counted
/// under [`OTHER_NAME`], which keeps the last place.
struct Labels(Names);

impl Labels {
    fn new() -> Labels {
        Labels(Names::new(MAX_NAMES))
    }

    /// The number of `name`, kept from now on if it is new and there is room.
    fn id(&mut self, name: &str) -> u16 {
        if let Some(i) = self.0.find(name) {
            return i as u16;
        }
        let name = if self.0.list.len() + 1 >= MAX_NAMES {
            OTHER_NAME
        } else {
            name
        };
        // Never None: the last place is left for OTHER_NAME.
        self.0.add(name).unwrap_or(0) as u16
    }

    fn find(&self, name: &str) -> Option<u16> {
        self.0.find(name).map(|i| i as u16)
    }

    fn name(&self, i: u16) -> &str {
        self.0.name(u32::from(i)).unwrap_or(OTHER_NAME)
    }
}

const SERVICE: u8 = 0;
const MECHANISM: u8 = 1;
const POSTURE: u8 = 2;

/// A count of failures by service, mechanism or posture: `kind` says which, `name` is
/// a number into the table's [`Labels`]. Kept in [`Lists`] as six bytes; a count past
/// `u32::MAX` goes on in a second tally of the same name (they are added up when the
/// record is read).
#[derive(Debug, Clone, Copy)]
struct Tally {
    n: u32,
    name: u16,
    kind: u8,
}

/// A tally's bytes: kind and name as a little-endian `u16` (the kind in the top two
/// bits), then the count as a little-endian `u32`.
const TALLY_LEN: usize = 6;
const _: () = assert!(MAX_NAMES <= 1 << 14);

impl Tally {
    fn read(b: &[u8]) -> Tally {
        let kn = u16::from_le_bytes([b[0], b[1]]);
        Tally {
            n: u32::from_le_bytes([b[2], b[3], b[4], b[5]]),
            name: kn & 0x3fff,
            kind: (kn >> 14) as u8,
        }
    }

    /// Writes the tally over the first [`TALLY_LEN`] bytes of `b` (in an entry's own
    /// bytes, where [`Tally::read`] read it).
    fn put(self, b: &mut [u8]) {
        let kn = u16::from(self.kind) << 14 | self.name;
        b[..2].copy_from_slice(&kn.to_le_bytes());
        b[2..TALLY_LEN].copy_from_slice(&self.n.to_le_bytes());
    }

    fn write(self, out: &mut Vec<u8>) {
        let mut b = [0; TALLY_LEN];
        self.put(&mut b);
        out.extend_from_slice(&b);
    }
}

/// Which list of an entry a name is on: tried in a failure, or logged in with.
const TRIED: usize = 0;
const LOGGED_IN: usize = 1;

/// An unsigned LEB128 number at the start of `b`: (value, bytes it took).
fn read_number(b: &[u8]) -> (u64, usize) {
    let (mut v, mut shift, mut used) = (0u64, 0u32, 0usize);
    for &x in b {
        used += 1;
        v |= u64::from(x & 0x7f) << shift;
        shift += 7;
        if x & 0x80 == 0 || shift >= u64::BITS {
            break;
        }
    }
    (v, used)
}

/// How many bytes [`push_number`] writes for `v`.
fn number_len(v: u64) -> usize {
    (u64::BITS - (v | 1).leading_zeros()).div_ceil(7) as usize
}

fn push_number(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// An account name in [`Lists`]: a number into the table's shared account names, or
/// the name's own bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Account<'a> {
    Shared(u32),
    Own(&'a [u8]),
}

/// An entry's tallies and account names in one allocation of exactly their size
/// (issue 17: a botnet address's record is usually three tallies and one to ten
/// names; as a small vector and a list of their own they took about 200 bytes out of
/// line, in two allocations):
/// - the number of tallies (LEB128), then the tallies, [`TALLY_LEN`] bytes each;
/// - then the account names to the end, each a LEB128 head (a number times four, plus
///   two if the name is shared, plus its list: [`TRIED`] or [`LOGGED_IN`]); the
///   number is a shared name's, or the length of the name's bytes, which follow.
#[derive(Debug, Default, Clone)]
struct Lists(Box<[u8]>);

impl Lists {
    /// Where the tallies' bytes are; the names start at its end.
    fn tally_bytes(&self) -> std::ops::Range<usize> {
        if self.0.is_empty() {
            return 0..0;
        }
        let (n, used) = read_number(&self.0);
        let end = (n as usize)
            .saturating_mul(TALLY_LEN)
            .saturating_add(used)
            .min(self.0.len());
        used..end
    }

    fn tallies(&self) -> impl Iterator<Item = Tally> + '_ {
        self.0[self.tally_bytes()]
            .chunks_exact(TALLY_LEN)
            .map(Tally::read)
    }

    /// Puts `tallies` in place of the entry's, keeping its names.
    fn set_tallies(&mut self, tallies: &[Tally]) {
        let rest = &self.0[self.tally_bytes().end..];
        if tallies.is_empty() && rest.is_empty() {
            self.0 = Box::default();
            return;
        }
        // Exactly the size: a boxed slice of a longer vector is one reallocation more.
        let count = tallies.len() as u64;
        let mut v = Vec::with_capacity(number_len(count) + tallies.len() * TALLY_LEN + rest.len());
        push_number(&mut v, count);
        for t in tallies {
            t.write(&mut v);
        }
        v.extend_from_slice(rest);
        debug_assert_eq!(v.len(), v.capacity());
        self.0 = v.into_boxed_slice();
    }

    fn bump(&mut self, kind: u8, name: u16, n: u64) {
        self.bump_each(&[(kind, name)], n);
    }

    /// [`Lists::bump`] of each (kind, name) by `n`, in one pass over the tallies and
    /// at most one rebuild for the names not there yet (a failure counts a service, a
    /// mechanism and a posture: three passes and up to three rebuilds before).
    fn bump_each(&mut self, adds: &[(u8, u16)], n: u64) {
        let mut rest: SmallVec<[(u8, u16, u64); 3]> =
            adds.iter().map(|&(kind, name)| (kind, name, n)).collect();
        let tallies = self.tally_bytes();
        for b in self.0[tallies].chunks_exact_mut(TALLY_LEN) {
            let mut t = Tally::read(b);
            let mut changed = false;
            for r in rest.iter_mut().filter(|r| r.0 == t.kind && r.1 == t.name) {
                let add = r.2.min(u64::from(u32::MAX - t.n));
                t.n += add as u32;
                r.2 -= add;
                changed = true;
            }
            if changed {
                t.put(b);
            }
        }
        if rest.iter().all(|r| r.2 == 0) {
            return;
        }
        let mut all: SmallVec<[Tally; 8]> = self.tallies().collect();
        for (kind, name, mut n) in rest {
            while n > 0 {
                let add = n.min(u64::from(u32::MAX));
                all.push(Tally {
                    n: add as u32,
                    name,
                    kind,
                });
                n -= add;
            }
        }
        self.set_tallies(&all);
    }

    /// Moves up to `n` of `kind` from `from` to `to`.
    fn shift(&mut self, kind: u8, from: Option<u16>, to: u16, n: u64) {
        let Some(from) = from else {
            return;
        };
        if !self.shift_in_place(kind, from, to, n) {
            self.shift_anew(kind, from, to, n);
        }
    }

    /// [`Lists::shift`] in the entry's own bytes: all of `from` moves to a `to` not
    /// there yet (the tally is renamed), part of it to a `to` there once with room,
    /// or all of it to such a `to` (`from`'s six bytes go, when the tallies' count
    /// keeps its length). Most moves are a failure's service, mechanism or posture
    /// learnt after it was counted (issue 17: a move built the tallies anew twice,
    /// two allocations). False, and nothing changed, otherwise.
    fn shift_in_place(&mut self, kind: u8, from: u16, to: u16, n: u64) -> bool {
        if from == to || n == 0 {
            return false;
        }
        let range = self.tally_bytes();
        let (mut source, mut target) = (None, None);
        for (i, b) in self.0[range.clone()].chunks_exact(TALLY_LEN).enumerate() {
            let t = Tally::read(b);
            let slot = match t.kind == kind {
                true if t.name == from => &mut source,
                true if t.name == to => &mut target,
                _ => continue,
            };
            if slot.is_some() {
                return false;
            }
            *slot = Some((i * TALLY_LEN, t));
        }
        let Some((at, mut s)) = source else {
            return false;
        };
        let start = range.start;
        let bytes = &mut self.0[range];
        let count = bytes.len() / TALLY_LEN;
        match target {
            None if u64::from(s.n) <= n => {
                s.name = to;
                s.put(&mut bytes[at..]);
            }
            Some((to_at, mut t))
                if u64::from(s.n) > n && u64::from(t.n) + n <= u64::from(u32::MAX) =>
            {
                s.n -= n as u32;
                t.n += n as u32;
                s.put(&mut bytes[at..]);
                t.put(&mut bytes[to_at..]);
            }
            // All of `from` into a `to` with room: `to` takes it and `from`'s bytes go,
            // when the tallies' count keeps its length.
            Some((to_at, mut t))
                if u64::from(t.n) + u64::from(s.n) <= u64::from(u32::MAX)
                    && number_len(count as u64 - 1) == start =>
            {
                t.n += s.n;
                t.put(&mut bytes[to_at..]);
                let mut v = std::mem::take(&mut self.0).into_vec();
                let mut head = Vec::with_capacity(start);
                push_number(&mut head, count as u64 - 1);
                v[..start].copy_from_slice(&head);
                let from_at = start + at;
                v.drain(from_at..from_at + TALLY_LEN);
                self.0 = v.into_boxed_slice();
            }
            _ => return false,
        }
        true
    }

    /// [`Lists::shift`] by building the tallies anew.
    fn shift_anew(&mut self, kind: u8, from: u16, to: u16, n: u64) {
        let mut all: SmallVec<[Tally; 8]> = self.tallies().collect();
        let mut moved = 0;
        for t in all.iter_mut().filter(|t| t.kind == kind && t.name == from) {
            let take = (n - moved).min(u64::from(t.n));
            t.n -= take as u32;
            moved += take;
        }
        if moved == 0 {
            return;
        }
        all.retain(|t| t.n > 0);
        self.set_tallies(&all);
        self.bump(kind, to, moved);
    }

    /// (list, name) pairs, in the order they were added.
    fn accounts(&self) -> impl Iterator<Item = (usize, Account<'_>)> {
        let mut rest = &self.0[self.tally_bytes().end..];
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let (head, used) = read_number(rest);
            let list = (head & 1) as usize;
            let number = head >> 2;
            if head & 2 != 0 {
                rest = &rest[used..];
                return Some((list, Account::Shared(number as u32)));
            }
            let end = used.saturating_add(number as usize).min(rest.len());
            let name = &rest[used..end];
            rest = &rest[end..];
            Some((list, Account::Own(name)))
        })
    }

    /// Adds `name` (`shared`: its number among the shared names) to `list` unless it
    /// is there; false when it is not there and the list already holds [`MAX_USERS`]
    /// names (one pass over the list).
    fn add(&mut self, list: usize, shared: Option<u32>, name: &str) -> bool {
        let mut held = 0;
        for (l, a) in self.accounts() {
            if l != list {
                continue;
            }
            let same = match a {
                Account::Shared(i) => shared == Some(i),
                Account::Own(b) => b == name.as_bytes(),
            };
            if same {
                return true;
            }
            held += 1;
        }
        if held >= MAX_USERS {
            return false;
        }
        self.push(list, shared, name);
        true
    }

    fn push(&mut self, list: usize, shared: Option<u32>, name: &str) {
        let empty = self.0.is_empty();
        let head = match shared {
            Some(i) => u64::from(i) << 2 | 2 | list as u64,
            None => (name.len() as u64) << 2 | list as u64,
        };
        let own = if shared.is_some() { 0 } else { name.len() };
        // Exactly the size, as in `set_tallies`.
        let mut v = Vec::with_capacity(usize::from(empty) + self.0.len() + number_len(head) + own);
        if empty {
            // No tallies yet: their count comes first.
            v.push(0);
        }
        v.extend_from_slice(&self.0);
        push_number(&mut v, head);
        if shared.is_none() {
            v.extend_from_slice(name.as_bytes());
        }
        debug_assert_eq!(v.len(), v.capacity());
        self.0 = v.into_boxed_slice();
    }

    fn strings(&self, list: usize, shared: &Names) -> Vec<String> {
        self.accounts()
            .filter(|(l, _)| *l == list)
            .map(|(_, a)| match a {
                Account::Shared(i) => shared.name(i).unwrap_or_default().to_owned(),
                // Only ever filled from `&str`: the lossy conversion never replaces
                // anything.
                Account::Own(b) => String::from_utf8_lossy(b).into_owned(),
            })
            .collect()
    }
}

/// One address's record in the table: what [`Offender`] says, in under a third of its
/// size (issue 17).
#[derive(Debug, Clone)]
struct Entry {
    failures: u64,
    first_failure: Timestamp,
    last_failure: Timestamp,
    /// These two stop at `u32::MAX` (four billion names not kept or logins from one
    /// address): eight bytes less per entry.
    users_not_kept: u32,
    logins_after_failure: u32,
    /// Failures by service, mechanism and posture; the accounts tried and the accounts
    /// logged in with.
    lists: Lists,
    geo: Option<Box<Origin>>,
    allowlisted: bool,
}

// 64 bytes at most: with its key and links, 88 bytes a table slot (issue 17).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Entry>() <= 64);

impl Entry {
    fn new(a: &Attempt) -> Entry {
        Entry {
            failures: 0,
            first_failure: a.time,
            last_failure: a.time,
            users_not_kept: 0,
            logins_after_failure: 0,
            lists: Lists::default(),
            geo: None,
            allowlisted: false,
        }
    }

    fn add_user(&mut self, shared: Option<u32>, u: &str) {
        if !self.lists.add(TRIED, shared, u) {
            self.users_not_kept = self.users_not_kept.saturating_add(1);
        }
    }
}

pub struct Offenders {
    map: crate::bounded::Lru<AddrKey, Entry>,
    labels: Labels,
    /// Account names kept once for all entries.
    accounts: Names,
}

/// The number of account name `u` among the shared ones: kept from now on if there
/// is room and it is short enough; None if it stays in its entry's own list.
fn shared(accounts: &mut Names, u: &str) -> Option<u32> {
    if u.len() > MAX_SHARED_ACCOUNT_LEN {
        return None;
    }
    accounts.add(u)
}

/// The records of a table, most failures first, each built when it is read: a report
/// of every offender does not hold them all at once.
pub struct Sorted<'a> {
    table: &'a Offenders,
    order: Vec<(IpAddr, &'a Entry)>,
}

impl Sorted<'_> {
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Offender> + '_ {
        self.order.iter().map(|(a, e)| self.table.record(*a, e))
    }
}

impl Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl std::fmt::Debug for Sorted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Offenders {
    pub fn new(cap: usize) -> Offenders {
        Offenders {
            map: crate::bounded::Lru::new(cap),
            labels: Labels::new(),
            accounts: Names::new(MAX_SHARED_ACCOUNTS),
        }
    }

    /// The record of `addr`, built from its entry.
    pub fn get(&self, addr: &IpAddr) -> Option<Offender> {
        let k = AddrKey::from(*addr);
        self.map.peek(&k).map(|e| self.record(k.ip(), e))
    }

    /// The failures of `addr` and the time of the last one, without building its
    /// record.
    pub fn failures(&self, addr: &IpAddr) -> Option<(u64, Timestamp)> {
        let e = self.map.peek(&(*addr).into())?;
        Some((e.failures, e.last_failure))
    }

    pub fn contains(&self, addr: &IpAddr) -> bool {
        self.map.contains(&(*addr).into())
    }

    fn counts(&self, e: &Entry, kind: u8) -> Counts {
        let mut c = Counts::default();
        for t in e.lists.tallies().filter(|t| t.kind == kind) {
            c.bump(self.labels.name(t.name), u64::from(t.n));
        }
        c
    }

    fn record(&self, address: IpAddr, e: &Entry) -> Offender {
        Offender {
            address,
            failures: e.failures,
            first_failure: e.first_failure,
            last_failure: e.last_failure,
            services: self.counts(e, SERVICE),
            mechanisms: self.counts(e, MECHANISM),
            users: e.lists.strings(TRIED, &self.accounts),
            users_not_kept: u64::from(e.users_not_kept),
            tls: self.counts(e, POSTURE),
            logins_after_failure: u64::from(e.logins_after_failure),
            login_users: e.lists.strings(LOGGED_IN, &self.accounts),
            allowlisted: e.allowlisted,
            geo: e.geo.as_deref().cloned().unwrap_or_default(),
        }
    }

    /// Puts back a record kept in the store (the daemon at start).
    pub fn restore(&mut self, o: Offender) {
        let mut e = Entry {
            failures: o.failures,
            first_failure: o.first_failure,
            last_failure: o.last_failure,
            users_not_kept: u32::try_from(o.users_not_kept).unwrap_or(u32::MAX),
            logins_after_failure: u32::try_from(o.logins_after_failure).unwrap_or(u32::MAX),
            lists: Lists::default(),
            geo: (!o.geo.is_empty()).then(|| Box::new(o.geo)),
            allowlisted: o.allowlisted,
        };
        for (kind, counts) in [
            (SERVICE, &o.services),
            (MECHANISM, &o.mechanisms),
            (POSTURE, &o.tls),
        ] {
            for (name, n) in counts.iter() {
                let id = self.labels.id(name);
                e.lists.bump(kind, id, n);
            }
        }
        for (list, names) in [(TRIED, &o.users), (LOGGED_IN, &o.login_users)] {
            for u in names.iter().take(MAX_USERS) {
                e.lists.push(list, shared(&mut self.accounts, u), u);
            }
        }
        self.map.put(o.address.into(), e);
    }

    /// Applies one outcome of the counter. `geo`: the origin of a counted failure's
    /// address, kept with its record in the same lookup (looked up at each failure,
    /// so a reloaded database updates it).
    pub fn apply(&mut self, o: &Outcome, allowlisted: bool, geo: Option<&Origin>) {
        match o {
            Outcome::Counted(a) => {
                let labels = &mut self.labels;
                let service = labels.id(a.service.as_deref().unwrap_or("unknown"));
                let mechanism = a.mechanism.as_deref().map(|m| labels.id(m));
                let posture = labels.id(&a.posture);
                let user = a
                    .user
                    .as_deref()
                    .map(|u| (shared(&mut self.accounts, u), u));
                let r = self
                    .map
                    .get_or_insert_mut(a.address.into(), || Entry::new(a));
                let n = u64::from(a.count);
                r.failures += n;
                r.first_failure = r.first_failure.min(a.time);
                r.last_failure = r.last_failure.max(a.time);
                r.allowlisted = allowlisted;
                match mechanism {
                    Some(m) => r
                        .lists
                        .bump_each(&[(SERVICE, service), (MECHANISM, m), (POSTURE, posture)], n),
                    None => r
                        .lists
                        .bump_each(&[(SERVICE, service), (POSTURE, posture)], n),
                }
                if let Some((id, u)) = user {
                    r.add_user(id, u);
                }
                if let Some(geo) = geo {
                    let same = match r.geo.as_deref() {
                        Some(g) => g == geo,
                        None => geo.is_empty(),
                    };
                    if !same {
                        r.geo = (!geo.is_empty()).then(|| Box::new(geo.clone()));
                    }
                }
            }
            Outcome::Refined {
                address,
                n,
                service,
                mechanism,
                user,
            } => {
                let Some(r) = self.map.get_mut(&(*address).into()) else {
                    return;
                };
                let n = u64::from(*n);
                let labels = &mut self.labels;
                if let Some((from, to)) = service {
                    let to = labels.id(to);
                    r.lists.shift(SERVICE, labels.find(from), to, n);
                }
                if let Some((from, to)) = mechanism {
                    let to = labels.id(to);
                    if from.is_empty() {
                        r.lists.bump(MECHANISM, to, n);
                    } else {
                        r.lists.shift(MECHANISM, labels.find(from), to, n);
                    }
                }
                if let Some(u) = user {
                    r.add_user(shared(&mut self.accounts, u), u);
                }
            }
            Outcome::Posture { address, n, label } => {
                if let Some(r) = self.map.get_mut(&(*address).into()) {
                    let to = self.labels.id(label);
                    let from = self.labels.find(UNKNOWN_POSTURE);
                    r.lists.shift(POSTURE, from, to, u64::from(*n));
                }
            }
            Outcome::Success { address, user, .. } => {
                if let Some(r) = self.map.get_mut(&(*address).into()) {
                    r.logins_after_failure = r.logins_after_failure.saturating_add(1);
                    if let Some(u) = user {
                        r.lists.add(LOGGED_IN, shared(&mut self.accounts, u), u);
                    }
                }
            }
            Outcome::Unavailable { .. } | Outcome::Ambiguous => {}
        }
    }

    /// All records, most failures first.
    pub fn sorted(&self) -> Sorted<'_> {
        let mut order: Vec<(IpAddr, &Entry)> = self.map.iter().map(|(k, e)| (k.ip(), e)).collect();
        order.sort_by(|(ka, a), (kb, b)| b.failures.cmp(&a.failures).then(ka.cmp(kb)));
        Sorted { table: self, order }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn evicted(&self) -> u64 {
        self.map.evicted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn failure(addr: &str, secs: i64, service: &str, user: Option<&str>, posture: &str) -> Outcome {
        Outcome::Counted(Attempt {
            time: Timestamp::from_secs(secs),
            address: addr.parse().unwrap(),
            count: 1,
            service: Some(Cow::Owned(service.to_string())),
            mechanism: Some("LOGIN".into()),
            user: user.map(str::to_string),
            posture: posture.into(),
        })
    }

    #[test]
    fn a_record_put_back_reads_back_the_same() {
        let long = "x".repeat(300);
        let o = Offender {
            address: "2001:db8::7".parse().unwrap(),
            failures: 9,
            first_failure: Timestamp::from_secs(100),
            last_failure: Timestamp::from_secs(900),
            services: [("smtpd", 2), ("submission", 7)].into_iter().fold(
                Counts::default(),
                |mut c, (k, n)| {
                    c.bump(k, n);
                    c
                },
            ),
            mechanisms: [("LOGIN", 4), ("PLAIN", 5)].into_iter().fold(
                Counts::default(),
                |mut c, (k, n)| {
                    c.bump(k, n);
                    c
                },
            ),
            users: vec!["".into(), "info".into(), long.clone(), "jörg@ex.de".into()],
            users_not_kept: 3,
            tls: [("TLSv1.3 TLS_AES_256_GCM_SHA384", 6), ("plaintext", 3)]
                .into_iter()
                .fold(Counts::default(), |mut c, (k, n)| {
                    c.bump(k, n);
                    c
                }),
            logins_after_failure: 1,
            login_users: vec!["info".into()],
            allowlisted: true,
            geo: Origin {
                country: Some("DE".into()),
                continent: Some("EU".into()),
                asn: Some(64500),
                as_org: Some("Example".into()),
            },
        };
        let mut t = Offenders::new(10);
        t.restore(o.clone());
        assert_eq!(t.get(&o.address), Some(o.clone()));
        // The same through the path a failure takes, and the JSON the store keeps.
        let json = serde_json::to_string(&t.sorted()).unwrap();
        let back: Vec<Offender> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, [o]);
    }

    #[test]
    fn counts_of_names_not_kept_and_logins_stop_at_32_bits() {
        let mut t = Offenders::new(10);
        let a: IpAddr = "192.0.2.5".parse().unwrap();
        t.apply(
            &failure("192.0.2.5", 1, "smtpd", None, "plaintext"),
            false,
            None,
        );
        let mut o = t.get(&a).unwrap();
        o.users_not_kept = u64::MAX;
        o.logins_after_failure = u64::from(u32::MAX) - 1;
        t.restore(o);
        for _ in 0..3 {
            t.apply(
                &Outcome::Success {
                    time: Timestamp::from_secs(2),
                    address: a,
                    user: None,
                    service: None,
                },
                false,
                None,
            );
        }
        let r = t.get(&a).unwrap();
        assert_eq!(r.users_not_kept, u64::from(u32::MAX));
        assert_eq!(r.logins_after_failure, u64::from(u32::MAX));
        assert_eq!(r.failures, 1);
    }

    #[test]
    fn failures_refinements_and_logins_land_in_the_record() {
        let mut t = Offenders::new(10);
        let a = "192.0.2.9";
        t.apply(
            &failure(a, 10, "auth", Some("root"), UNKNOWN_POSTURE),
            false,
            None,
        );
        t.apply(
            &failure(a, 20, "auth", Some("root"), UNKNOWN_POSTURE),
            false,
            None,
        );
        t.apply(
            &failure(a, 5, "smtpd", Some("admin"), "plaintext"),
            false,
            None,
        );
        t.apply(
            &Outcome::Refined {
                address: a.parse().unwrap(),
                n: 2,
                service: Some((Cow::Borrowed("auth"), Cow::Borrowed("imap"))),
                mechanism: Some(("LOGIN".into(), "PLAIN".into())),
                user: Some("postmaster".into()),
            },
            false,
            None,
        );
        t.apply(
            &Outcome::Posture {
                address: a.parse().unwrap(),
                n: 2,
                label: "TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384".into(),
            },
            false,
            None,
        );
        let r = t.get(&a.parse().unwrap()).unwrap();
        assert_eq!(r.failures, 3);
        assert_eq!(r.first_failure, Timestamp::from_secs(5));
        assert_eq!(r.last_failure, Timestamp::from_secs(20));
        let c = |c: &Counts| {
            c.iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(c(&r.services), ["imap=2", "smtpd=1"]);
        assert_eq!(c(&r.mechanisms), ["LOGIN=1", "PLAIN=2"]);
        assert_eq!(
            c(&r.tls),
            ["TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384=2", "plaintext=1"]
        );
        assert_eq!(r.users, ["root", "admin", "postmaster"]);
        assert_eq!(r.logins_after_failure, 0);
        // The stolen password: a login as an account tried before, twice.
        for _ in 0..2 {
            t.apply(
                &Outcome::Success {
                    time: Timestamp::from_secs(30),
                    address: a.parse().unwrap(),
                    user: Some("admin".into()),
                    service: None,
                },
                false,
                None,
            );
        }
        let r = t.get(&a.parse().unwrap()).unwrap();
        assert_eq!(r.logins_after_failure, 2);
        assert_eq!(r.login_users, ["admin"]);
        assert_eq!(r.users, ["root", "admin", "postmaster"]);
    }

    #[test]
    fn counts_past_32_bits_go_on_in_a_second_tally_and_add_up() {
        let mut t = Offenders::new(10);
        let a: IpAddr = "192.0.2.77".parse().unwrap();
        let big = |posture: &str| {
            let mut o = failure("192.0.2.77", 1, "auth", Some("root"), posture);
            if let Outcome::Counted(a) = &mut o {
                a.count = u32::MAX;
            }
            o
        };
        t.apply(&big(UNKNOWN_POSTURE), false, None);
        t.apply(&big(UNKNOWN_POSTURE), false, None);
        t.apply(
            &failure("192.0.2.77", 2, "auth", None, UNKNOWN_POSTURE),
            false,
            None,
        );
        let total = 2 * u64::from(u32::MAX) + 1;
        let r = t.get(&a).unwrap();
        assert_eq!(r.failures, total);
        assert_eq!(r.services.get("auth"), Some(&total));
        assert_eq!(r.mechanisms.get("LOGIN"), Some(&total));
        // A refinement moves counts across both tallies of a name.
        t.apply(
            &Outcome::Posture {
                address: a,
                n: u32::MAX,
                label: "plaintext".into(),
            },
            false,
            None,
        );
        t.apply(
            &Outcome::Refined {
                address: a,
                n: u32::MAX,
                service: Some((Cow::Borrowed("auth"), Cow::Borrowed("imap"))),
                mechanism: None,
                user: None,
            },
            false,
            None,
        );
        let r = t.get(&a).unwrap();
        assert_eq!(r.tls.get("plaintext"), Some(&u64::from(u32::MAX)));
        assert_eq!(r.tls.get(UNKNOWN_POSTURE), Some(&(u64::from(u32::MAX) + 1)));
        assert_eq!(r.services.get("imap"), Some(&u64::from(u32::MAX)));
        assert_eq!(r.services.values().sum::<u64>(), total);
    }

    #[test]
    fn user_names_past_the_bound_are_counted_not_kept() {
        let mut t = Offenders::new(10);
        for i in 0..MAX_USERS + 7 {
            let u = format!("user{i}");
            t.apply(
                &failure("192.0.2.1", 1, "smtpd", Some(&u), "plaintext"),
                false,
                None,
            );
            if i < MAX_USERS {
                // A name kept, seen again, is not a new one.
                t.apply(
                    &failure("192.0.2.1", 2, "smtpd", Some(&u), "plaintext"),
                    false,
                    None,
                );
            }
        }
        let r = t.get(&"192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(r.users.len(), MAX_USERS);
        assert_eq!(r.users[0], "user0");
        assert_eq!(r.users_not_kept, 7);
    }

    #[test]
    fn names_past_the_bound_count_as_other_and_nothing_is_lost() {
        // Postures named by a (forged or odd) log: past MAX_NAMES distinct names, the
        // counts still add up, under "other".
        let mut t = Offenders::new(10);
        let n = MAX_NAMES + 50;
        for i in 0..n {
            let label = format!("TLSv1.3 CIPHER-{i}");
            t.apply(
                &failure("2001:db8::1", 1, "smtpd", None, &label),
                false,
                None,
            );
        }
        let r = t.get(&"2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(r.failures, n as u64);
        assert_eq!(r.tls.values().sum::<u64>(), n as u64);
        // The table's names: "smtpd", "LOGIN", the postures, and the last place for
        // "other".
        let kept = MAX_NAMES - 3;
        assert_eq!(r.tls.get(OTHER_NAME), Some(&((n - kept) as u64)));
        assert_eq!(r.tls.iter().count(), kept + 1);
        assert_eq!(r.services.get("smtpd"), Some(&(n as u64)));
    }

    #[test]
    fn moves_in_place_leave_the_counts_a_rebuild_leaves() {
        // Random bumps and moves over a few names of two kinds, counts near the top
        // of a u32 among them, applied to two lists: one moves in place where it can,
        // the other always builds anew. They hold the same tallies (perhaps in
        // another order) and the same names.
        let (mut fast, mut anew) = (Lists::default(), Lists::default());
        fast.add(TRIED, None, "alice");
        anew.add(TRIED, None, "alice");
        let sorted = |l: &Lists| {
            let mut t: Vec<(u8, u16, u32)> = l.tallies().map(|t| (t.kind, t.name, t.n)).collect();
            t.sort_unstable();
            t
        };
        let (mut in_place, mut rebuilt, mut merged) = (0, 0, 0);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let kind = (x % 2) as u8 + 1;
            let (a, b) = ((x >> 8) as u16 % 4, (x >> 16) as u16 % 4);
            let n = match (x >> 24) % 8 {
                0 => u64::from(u32::MAX) - 2,
                1 => 0,
                k => k,
            };
            if (x >> 40).is_multiple_of(3) {
                // One pass for two names, against a bump for each.
                let other = 3 - kind;
                fast.bump_each(&[(kind, a), (other, b)], n);
                anew.bump(kind, a, n);
                anew.bump(other, b, n);
            } else {
                let mut moved = fast.clone();
                if moved.shift_in_place(kind, a, b, n) {
                    in_place += 1;
                    merged += usize::from(moved.tallies().count() < fast.tallies().count());
                } else {
                    rebuilt += 1;
                }
                fast.shift(kind, Some(a), b, n);
                anew.shift_anew(kind, a, b, n);
            }
            assert_eq!(sorted(&fast), sorted(&anew));
            assert_eq!(fast.strings(TRIED, &Names::new(0)), ["alice"]);
            if fast.tallies().count() > 12 {
                (fast, anew) = (Lists::default(), Lists::default());
                fast.add(TRIED, None, "alice");
                anew.add(TRIED, None, "alice");
            }
        }
        // Each way was taken often: in place, merged in place, and built anew.
        assert!(
            in_place > 10_000 && rebuilt > 10_000 && merged > 5_000,
            "{in_place} {rebuilt} {merged}"
        );
    }

    #[test]
    fn a_merge_across_the_counts_length_keeps_every_count_and_name() {
        // 128 tallies take a two-byte count, 127 a one-byte one: a move of all of one
        // name into another must shorten the count, not leave a stale one.
        for total in [127u16, 128, 129] {
            let mut l = Lists::default();
            l.add(TRIED, None, "alice");
            for k in 0..total {
                l.bump(POSTURE, k, u64::from(k) + 1);
            }
            l.shift(POSTURE, Some(0), 1, 1);
            assert_eq!(l.tallies().count(), usize::from(total) - 1, "{total}");
            assert_eq!(l.tallies().find(|t| t.name == 1).map(|t| t.n), Some(3));
            assert!(l.tallies().all(|t| t.name != 0));
            let sum: u64 = l.tallies().map(|t| u64::from(t.n)).sum();
            assert_eq!(sum, (1..=u64::from(total)).sum::<u64>(), "{total}");
            assert_eq!(l.strings(TRIED, &Names::new(0)), ["alice"]);
        }
    }

    #[test]
    fn lists_keep_names_of_every_length_beside_their_tallies() {
        let mut shared = Names::new(2);
        let mut l = Lists::default();
        let names: Vec<String> = [0, 1, 127, 128, 300, 16_384, 70_000]
            .iter()
            .map(|&n| "é".repeat(n / 2) + &"a".repeat(n % 2))
            .collect();
        fn add(shared: &mut Names, l: &mut Lists, list: usize, n: &str) -> bool {
            let id = super::shared(shared, n);
            l.add(list, id, n)
        }
        for (i, n) in names.iter().enumerate() {
            assert!(add(&mut shared, &mut l, TRIED, n));
            assert!(add(&mut shared, &mut l, LOGGED_IN, &n.to_uppercase()));
            // Tallies come and go between names: more than 127 of them take a
            // longer count at the front.
            for k in 0..40 {
                l.bump(POSTURE, (i * 40 + k) as u16, 1);
            }
        }
        let upper: Vec<String> = names.iter().map(|n| n.to_uppercase()).collect();
        // "" and "a" are shared; "A" finds no room left, the others are too long:
        // they are kept in the list itself.
        assert_eq!(shared.list.len(), 2);
        assert!(l.accounts().any(|(_, a)| matches!(a, Account::Shared(_))));
        assert!(l.accounts().any(|(_, a)| matches!(a, Account::Own(_))));
        assert_eq!(l.strings(TRIED, &shared), names);
        assert_eq!(l.strings(LOGGED_IN, &shared), upper);
        assert_eq!(l.tallies().count(), names.len() * 40);
        assert!(l.tallies().all(|t| t.n == 1 && t.kind == POSTURE));
        // Present: nothing added; absent from this list: added to it.
        assert!(add(&mut shared, &mut l, TRIED, &names[1]));
        assert!(add(&mut shared, &mut l, TRIED, &names[4]));
        assert_eq!(l.strings(TRIED, &shared), names);
        assert!(add(&mut shared, &mut l, LOGGED_IN, &names[4]));
        assert_eq!(l.strings(LOGGED_IN, &shared).last(), Some(&names[4]));
        // Tallies moved away leave the names as they were.
        l.shift(POSTURE, Some(3), 9, 1);
        assert_eq!(l.tallies().count(), names.len() * 40 - 1);
        assert_eq!(l.tallies().find(|t| t.name == 9).map(|t| t.n), Some(2));
        assert_eq!(l.strings(TRIED, &shared), names);
        assert_eq!(l.strings(LOGGED_IN, &shared).len(), names.len() + 1);
    }

    #[test]
    fn names_shared_by_entries_and_names_of_their_own_read_back_alike() {
        // An attacker first fills the shared names with his own; later names stay
        // in each entry's list and read back the same.
        let mut t = Offenders::new(100);
        for i in 0..MAX_SHARED_ACCOUNTS + 10 {
            let u = format!("junk{i}");
            t.apply(
                &failure("198.51.100.1", 1, "smtpd", Some(&u), "plaintext"),
                false,
                None,
            );
        }
        let long = "l".repeat(MAX_SHARED_ACCOUNT_LEN + 1);
        for (a, u) in [
            ("192.0.2.1", "admin"),
            ("192.0.2.2", "admin"),
            ("192.0.2.2", long.as_str()),
            ("192.0.2.2", "junk5"),
            ("192.0.2.2", "admin"),
        ] {
            t.apply(&failure(a, 2, "smtpd", Some(u), "plaintext"), false, None);
        }
        t.apply(
            &Outcome::Success {
                time: Timestamp::from_secs(3),
                address: "192.0.2.2".parse().unwrap(),
                user: Some("admin".into()),
                service: None,
            },
            false,
            None,
        );
        let r = t.get(&"192.0.2.2".parse().unwrap()).unwrap();
        assert_eq!(r.users, ["admin", long.as_str(), "junk5"]);
        assert_eq!(r.login_users, ["admin"]);
        assert_eq!(r.failures, 4);
        assert_eq!(
            t.get(&"192.0.2.1".parse().unwrap()).unwrap().users,
            ["admin"]
        );
        let r = t.get(&"198.51.100.1".parse().unwrap()).unwrap();
        assert_eq!(r.users.len(), MAX_USERS);
        assert_eq!(
            r.users_not_kept,
            (MAX_SHARED_ACCOUNTS + 10 - MAX_USERS) as u64
        );
        assert_eq!(t.accounts.list.len(), MAX_SHARED_ACCOUNTS);
    }
}
