//! Bounded tables that grow as they fill: every table fed by log content is an LRU of
//! fixed size, but `lru::LruCache::new` reserves its whole capacity at once, which made
//! a replay of a small file, or a quiet daemon, pay for 100,000 addresses up front
//! (issue 17: an eighth of a short replay went to zeroing those pages).

use lru::LruCache;
use std::hash::{BuildHasher, Hash};
use std::num::NonZeroUsize;

/// An LRU of at most `cap` entries (at least one) that allocates only as it fills.
pub fn lru<K: Hash + Eq, V>(cap: usize) -> LruCache<K, V> {
    let mut c = LruCache::unbounded();
    c.resize(NonZeroUsize::new(cap.max(1)).unwrap_or(NonZeroUsize::MIN));
    c
}

/// [`Lru::pop_oldest_while`] for an `lru::LruCache`: removes its least recent entries
/// while `dead` says they are, at most `max`; returns how many went.
pub fn pop_lru_while<K: Hash + Eq, V>(
    c: &mut LruCache<K, V>,
    max: usize,
    dead: impl Fn(&V) -> bool,
) -> usize {
    let mut n = 0;
    while n < max && c.peek_lru().is_some_and(|(_, v)| dead(v)) {
        c.pop_lru();
        n += 1;
    }
    n
}

/// Room for one more element in a per-address or per-prefix ring: the first element
/// gets room for itself only, then the room doubles. The standard growth starts at
/// four, and most addresses of a botnet never get a second entry (issue 17: up to 160
/// bytes per tracked address went to room never used). Lists that start with one
/// element are `SmallVec`s with it inline.
pub fn ring_room_for_one<T>(v: &mut std::collections::VecDeque<T>) {
    if v.len() == v.capacity() {
        v.reserve_exact(v.len().max(1));
    }
}

/// An LRU of at most `cap` entries kept in one array, linked by 32-bit indices and
/// found through a table of 32-bit indices: the per-address tables of a daemon under a
/// botnet (issue 17). `lru::LruCache` allocates every entry on its own, with two
/// 64-bit links, behind a table of (key pointer, entry pointer) pairs: about 50 bytes
/// more per entry, and two such tables per tracked address. The table's hash is keyed
/// per process (the keys are addresses an attacker picks).
pub struct Lru<K, V> {
    slots: Chunks<Slot<K, V>>,
    index: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    newest: u32,
    oldest: u32,
    cap: usize,
    /// Entries pushed out to keep the bound.
    evicted: u64,
}

struct Slot<K, V> {
    key: K,
    value: V,
    newer: u32,
    older: u32,
}

const NIL: u32 = u32::MAX;

/// A table swept down to less than this fraction of its room gives the room back.
const SHRINK_BELOW: usize = 16;

/// Entries per chunk of a table's array (as a power of two).
const CHUNK_SHIFT: u32 = 14;

/// A table's array in chunks of 2^[`CHUNK_SHIFT`] entries (16,384; 2^12 left a
/// daemon 4 MB larger after a flood, its 512 kB chunks among mimalloc's smaller
/// pages, and 2^16 brought back a replay's peak); the first grows up to that size by
/// doubling, as a vector does, the others are made at that size. Growing never copies
/// more than a chunk: a vector that doubles holds its old and its new array at once,
/// and every table of a replay doubles in the same minutes of its first day (issue 17:
/// a realistic 10M-line replay's resident size jumped 5 to 8 MB for a few hundredths
/// of a second there, above its size at the end). Entries sit at `0..len`: entry `i`
/// is in chunk `i >> shift`; chunks emptied by removals stay until the table shrinks.
struct Chunks<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
    shift: u32,
}

impl<T> Chunks<T> {
    fn new(shift: u32) -> Chunks<T> {
        Chunks {
            chunks: Vec::new(),
            len: 0,
            shift,
        }
    }

    /// Entries per chunk.
    fn size(&self) -> usize {
        1 << self.shift
    }

    /// Where entry `i` is: its chunk, and its place in the chunk.
    fn place(&self, i: usize) -> (usize, usize) {
        (i >> self.shift, i & (self.size() - 1))
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries the chunks have room for.
    fn room(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }

    fn get(&self, i: usize) -> Option<&T> {
        let (k, j) = self.place(i);
        self.chunks.get(k)?.get(j)
    }

    /// Appends `v`; `cap` is the table's bound, which no chunk's room goes past.
    fn push(&mut self, v: T, cap: usize) {
        let (k, size) = (self.len >> self.shift, self.size());
        if k == self.chunks.len() {
            let room = if k == 0 { 4 } else { size };
            self.chunks.push(Vec::with_capacity(
                room.min(cap.saturating_sub(self.len)).max(1),
            ));
        }
        let c = &mut self.chunks[k];
        if c.len() == c.capacity() {
            // Only the first chunk grows: doubling, but never past a chunk or the bound.
            let more = c
                .len()
                .max(4)
                .min(size - c.len())
                .min(cap.saturating_sub(self.len))
                .max(1);
            c.reserve_exact(more);
        }
        c.push(v);
        self.len += 1;
    }

    /// Removes entry `i`, the last one taking its place.
    fn swap_remove(&mut self, i: usize) -> T {
        assert!(i < self.len, "entry {i} of {}", self.len);
        self.len -= 1;
        let last = match self.chunks[self.len >> self.shift].pop() {
            Some(v) => v,
            None => unreachable!("entry {} is in its chunk", self.len),
        };
        if i == self.len {
            last
        } else {
            std::mem::replace(&mut self[i], last)
        }
    }

    /// Gives back the room past `keep` entries (at least the entries held).
    fn shrink_to(&mut self, keep: usize) {
        let keep = keep.max(self.len);
        self.chunks.truncate(keep.div_ceil(self.size()).max(1));
        if let [only] = &mut self.chunks[..] {
            only.shrink_to(keep);
        }
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

impl<T> std::ops::Index<usize> for Chunks<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        let (k, j) = self.place(i);
        &self.chunks[k][j]
    }
}

impl<T> std::ops::IndexMut<usize> for Chunks<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        let (k, j) = self.place(i);
        &mut self.chunks[k][j]
    }
}

impl<K: Hash + Eq, V> Lru<K, V> {
    /// At most `cap` entries (at least one); allocates only as it fills.
    pub fn new(cap: usize) -> Lru<K, V> {
        Lru {
            slots: Chunks::new(CHUNK_SHIFT),
            index: hashbrown::HashTable::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            newest: NIL,
            oldest: NIL,
            cap: cap.clamp(1, NIL as usize - 1),
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Entries pushed out so far to keep the bound (never silent: reported).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Carries the count of [`Lru::evicted`] over to a table that replaces this one.
    pub fn set_evicted(&mut self, n: u64) {
        self.evicted = n;
    }

    fn find(&self, k: &K) -> Option<u32> {
        self.find_hashed(self.hasher.hash_one(k), k)
    }

    /// [`Lru::find`] with the hash of `k` made already.
    fn find_hashed(&self, hash: u64, k: &K) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(hash, |&i| slots[i as usize].key == *k)
            .copied()
    }

    pub fn contains(&self, k: &K) -> bool {
        self.find(k).is_some()
    }

    /// The entry of `k`, without making it the most recent.
    pub fn peek(&self, k: &K) -> Option<&V> {
        self.find(k).map(|i| &self.slots[i as usize].value)
    }

    /// The entry of `k`, without making it the most recent.
    pub fn peek_mut(&mut self, k: &K) -> Option<&mut V> {
        let i = self.find(k)?;
        Some(&mut self.slots[i as usize].value)
    }

    /// Sets the entry of `k` to `v`, made the most recent (the least recent one goes
    /// when the table is full).
    pub fn put(&mut self, k: K, v: V) {
        let hash = self.hasher.hash_one(&k);
        match self.find_hashed(hash, &k) {
            Some(i) => {
                self.touch(i);
                self.slots[i as usize].value = v;
            }
            None => {
                self.insert_new(hash, k, v);
            }
        }
    }

    /// The entry of `k`, made the most recent.
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let i = self.find(k)?;
        self.touch(i);
        Some(&mut self.slots[i as usize].value)
    }

    /// The entry of `k`, made the most recent; a new one from `make` if there is none,
    /// in place of the least recent one when the table is full.
    pub fn get_or_insert_mut(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        // One hash of `k`, for the lookup and for the insertion.
        let hash = self.hasher.hash_one(&k);
        let i = match self.find_hashed(hash, &k) {
            Some(i) => {
                self.touch(i);
                i
            }
            None => self.insert_new(hash, k, make()),
        };
        &mut self.slots[i as usize].value
    }

    /// Adds `k`, not in the table, hashed to `hash`, as the most recent entry, in
    /// place of the least recent one when the table is full. Returns its place.
    fn insert_new(&mut self, hash: u64, k: K, v: V) -> u32 {
        let i = if self.slots.len() < self.cap {
            self.slots.push(
                Slot {
                    key: k,
                    value: v,
                    newer: NIL,
                    older: NIL,
                },
                self.cap,
            );
            (self.slots.len() - 1) as u32
        } else {
            self.evicted += 1;
            let i = self.oldest;
            let old_hash = self.hasher.hash_one(&self.slots[i as usize].key);
            if let Ok(e) = self.index.find_entry(old_hash, |&j| j == i) {
                e.remove();
            }
            self.unlink(i);
            let s = &mut self.slots[i as usize];
            s.key = k;
            s.value = v;
            i
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(&slots[j as usize].key));
        self.link_newest(i);
        i
    }

    /// Removes the entry of `k`.
    pub fn pop(&mut self, k: &K) -> Option<V> {
        let hash = self.hasher.hash_one(k);
        let slots = &self.slots;
        let i = match self
            .index
            .find_entry(hash, |&i| slots[i as usize].key == *k)
        {
            Ok(e) => e.remove().0,
            Err(_) => return None,
        };
        Some(self.take_out(i))
    }

    /// Removes entries from the least recent end for as long as `dead` says they are,
    /// at most `max` of them, and returns how many went. For state past every window
    /// that reads it: these are not evictions (nothing that could still count is
    /// lost), so they are not counted as such. Once the table is under a sixteenth of
    /// its room, the room is given back down to twice what it holds, in whole chunks
    /// past the first (a daemon after a flood); at a quarter, freeing and copying a
    /// table that had held a million took 45 ms in one go.
    pub fn pop_oldest_while(&mut self, max: usize, mut dead: impl FnMut(&K, &V) -> bool) -> usize {
        let mut n = 0;
        while let Some(s) = self.slots.get(self.oldest as usize) {
            if n == max || !dead(&s.key, &s.value) {
                break;
            }
            let i = self.oldest;
            let hash = self.hasher.hash_one(&s.key);
            if let Ok(e) = self.index.find_entry(hash, |&j| j == i) {
                e.remove();
            }
            self.take_out(i);
            n += 1;
        }
        let room = self.slots.room();
        if n > 0 && room > 64 && self.slots.len() < room / SHRINK_BELOW {
            let keep = (self.slots.len() * 2).max(64);
            self.slots.shrink_to(keep);
            // The index built anew from the array, read front to back (a rehash in
            // place visits it in the index's order, at random: the worst line of
            // `addr_cost`'s aged flood took 19 to 26 ms with it, 15.6 ms without,
            // measured with the array in one piece; 9.6 ms since it is in chunks).
            let (slots, hasher) = (&self.slots, &self.hasher);
            let mut index = hashbrown::HashTable::with_capacity(keep);
            for (j, s) in slots.iter().enumerate() {
                index.insert_unique(hasher.hash_one(&s.key), j as u32, |&j| {
                    hasher.hash_one(&slots[j as usize].key)
                });
            }
            self.index = index;
        }
        n
    }

    /// Takes entry `i`, already out of the index, out of the list and the array.
    fn take_out(&mut self, i: u32) -> V {
        self.unlink(i);
        // The last entry moves into the hole: its links and its index follow it.
        let last = (self.slots.len() - 1) as u32;
        if i != last {
            let moved_hash = self.hasher.hash_one(&self.slots[last as usize].key);
            if let Ok(mut e) = self.index.find_entry(moved_hash, |&j| j == last) {
                *e.get_mut() = i;
            }
            self.repoint(last, i, i);
        }
        self.slots.swap_remove(i as usize).value
    }

    /// Entries, the most recent first.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.walk(self.newest, |s| s.older)
    }

    /// Entries, the least recent first.
    pub fn iter_oldest_first(&self) -> impl Iterator<Item = (&K, &V)> {
        self.walk(self.oldest, |s| s.newer)
    }

    fn walk(&self, from: u32, next: impl Fn(&Slot<K, V>) -> u32) -> impl Iterator<Item = (&K, &V)> {
        let mut at = from;
        std::iter::from_fn(move || {
            let s = self.slots.get(at as usize)?;
            at = next(s);
            Some((&s.key, &s.value))
        })
    }

    fn touch(&mut self, i: u32) {
        if self.newest != i {
            self.unlink(i);
            self.link_newest(i);
        }
    }

    fn unlink(&mut self, i: u32) {
        let s = &self.slots[i as usize];
        let (newer, older) = (s.newer, s.older);
        self.repoint(i, older, newer);
    }

    /// Makes what points to entry `of` point elsewhere: its newer neighbour (or the
    /// list's newest end) to `from_newer`, its older one (or the oldest end) to
    /// `from_older`.
    fn repoint(&mut self, of: u32, from_newer: u32, from_older: u32) {
        let s = &self.slots[of as usize];
        let (newer, older) = (s.newer, s.older);
        match newer {
            NIL => self.newest = from_newer,
            n => self.slots[n as usize].older = from_newer,
        }
        match older {
            NIL => self.oldest = from_older,
            o => self.slots[o as usize].newer = from_older,
        }
    }

    fn link_newest(&mut self, i: u32) {
        let old = self.newest;
        {
            let s = &mut self.slots[i as usize];
            s.newer = NIL;
            s.older = old;
        }
        match old {
            NIL => self.oldest = i,
            o => self.slots[o as usize].newer = i,
        }
        self.newest = i;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn grows_as_it_fills_and_keeps_its_bound() {
        let mut c = super::lru::<u32, u32>(3);
        assert_eq!(c.cap().get(), 3);
        for i in 0..10 {
            c.put(i, i);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.peek_lru(), Some((&7, &7)));
        assert_eq!(super::lru::<u32, u32>(0).cap().get(), 1);
    }

    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u32),
        Put(u8, u32),
        Peek(u8),
        PeekMut(u8),
        Get(u8),
        Pop(u8),
        /// Drops the least recent entries while their value is under this, at most so
        /// many.
        Expire(u32, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..12, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            (0u8..12, any::<u32>()).prop_map(|(k, v)| Op::Put(k, v)),
            (0u8..12).prop_map(Op::Peek),
            (0u8..12).prop_map(Op::PeekMut),
            (0u8..12).prop_map(Op::Get),
            (0u8..12).prop_map(Op::Pop),
            (any::<u32>(), 0u8..8).prop_map(|(t, max)| Op::Expire(t, max)),
        ]
    }

    proptest! {
        /// The compact LRU keeps, evicts and orders exactly as `lru::LruCache` does.
        #[test]
        fn the_compact_lru_behaves_as_lru_cache(cap in 1usize..7, ops in proptest::collection::vec(op(), 0..200)) {
            let mut model = super::lru::<u8, u32>(cap);
            let mut ours = super::Lru::<u8, u32>::new(cap);
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        let m = model.get_or_insert_mut(k, || v);
                        *m = m.wrapping_add(1);
                        let o = ours.get_or_insert_mut(k, || v);
                        *o = o.wrapping_add(1);
                    }
                    Op::Put(k, v) => {
                        model.put(k, v);
                        ours.put(k, v);
                    }
                    Op::Peek(k) => prop_assert_eq!(model.peek(&k), ours.peek(&k)),
                    Op::PeekMut(k) => {
                        if let Some(m) = model.peek_mut(&k) {
                            *m = m.wrapping_mul(3);
                        }
                        if let Some(o) = ours.peek_mut(&k) {
                            *o = o.wrapping_mul(3);
                        }
                    }
                    Op::Get(k) => prop_assert_eq!(model.get_mut(&k).copied(), ours.get_mut(&k).copied()),
                    Op::Pop(k) => prop_assert_eq!(model.pop(&k), ours.pop(&k)),
                    Op::Expire(t, max) => {
                        let mut n = 0;
                        while n < usize::from(max) && model.peek_lru().is_some_and(|(_, v)| *v < t) {
                            model.pop_lru();
                            n += 1;
                        }
                        prop_assert_eq!(ours.pop_oldest_while(usize::from(max), |_, v| *v < t), n);
                    }
                }
                prop_assert_eq!(model.len(), ours.len());
                prop_assert!(ours.len() <= cap);
                let m: Vec<(u8, u32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
                let o: Vec<(u8, u32)> = ours.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(&m, &o);
                let mut back: Vec<(u8, u32)> = ours.iter_oldest_first().map(|(k, v)| (*k, *v)).collect();
                back.reverse();
                prop_assert_eq!(&m, &back);
                for k in 0..12u8 {
                    prop_assert_eq!(model.contains(&k), ours.contains(&k));
                }
            }
        }
    }

    #[test]
    fn the_compact_lru_grows_as_it_fills_up_to_its_bound() {
        let mut c = super::Lru::<u32, u64>::new(100);
        assert_eq!(c.slots.room(), 0);
        for i in 0..1000 {
            c.get_or_insert_mut(i, || u64::from(i));
        }
        assert_eq!(c.len(), 100);
        assert_eq!(c.evicted(), 900);
        assert_eq!(c.slots.room(), 100, "no room reserved past the bound");
        assert_eq!(c.iter_oldest_first().next(), Some((&900, &900)));
        assert_eq!(super::Lru::<u32, u32>::new(0).cap(), 1);
    }

    /// The model test above at the size of several chunks: entries move between
    /// chunks as others leave, tables shrink and grow again across chunk edges.
    #[test]
    fn the_compact_lru_behaves_as_lru_cache_across_chunks() {
        // Chunks of 64 entries: the table's edges are the same code at any size.
        let chunk = 64;
        let cap = 2 * chunk + 77;
        let keys = 6 * chunk as u64;
        let mut model = super::lru::<u64, u64>(cap);
        let mut ours = super::Lru::<u64, u64>::new(cap);
        ours.slots = super::Chunks::new(6);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut most_chunks, mut shrunk) = (0, 0);
        for step in 0..300_000u64 {
            let k = next() % keys;
            match next() % 1_000 {
                0..650 => {
                    *model.get_or_insert_mut(k, || step) += 1;
                    *ours.get_or_insert_mut(k, || step) += 1;
                }
                650..940 => assert_eq!(model.get_mut(&k).copied(), ours.get_mut(&k).copied()),
                940..999 => assert_eq!(model.pop(&k), ours.pop(&k)),
                _ => {
                    // A sweep of everything older than a while ago: the table
                    // shrinks, at times to under a sixteenth of its room.
                    let t = step.saturating_sub(next() % 600);
                    let room = ours.slots.room();
                    let mut n = 0;
                    while model.peek_lru().is_some_and(|(_, v)| *v < t) {
                        model.pop_lru();
                        n += 1;
                    }
                    assert_eq!(ours.pop_oldest_while(usize::MAX, |_, v| *v < t), n);
                    shrunk += usize::from(ours.slots.room() < room);
                }
            }
            most_chunks = most_chunks.max(ours.slots.chunks.len());
            assert_eq!(model.len(), ours.len());
            assert!(ours.slots.room() <= cap);
            if step % 5_000 == 0 {
                let m: Vec<(u64, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
                let o: Vec<(u64, u64)> = ours.iter().map(|(k, v)| (*k, *v)).collect();
                assert_eq!(m, o, "step {step}");
                for k in 0..keys {
                    assert_eq!(model.peek(&k), ours.peek(&k));
                }
            }
        }
        // 205 entries: three chunks of 64 and one cut short by the bound.
        assert_eq!(most_chunks, 4, "the table spanned four chunks");
        assert!(shrunk >= 3, "it gave its room back {shrunk} times");
    }

    /// Entries past their time leave from the least recent end, are not counted as
    /// evictions, and the room of a table that emptied out is given back.
    #[test]
    fn dead_entries_leave_and_give_their_room_back() {
        let mut c = super::Lru::<u32, u32>::new(100_000);
        for i in 0..10_000 {
            c.get_or_insert_mut(i, || i);
        }
        let room = c.slots.room();
        // A touched old entry stops the sweep: the least recent end is swept only
        // while it is dead.
        c.get_mut(&5);
        assert_eq!(
            c.pop_oldest_while(1_000, |_, v| *v < 9_990),
            1_000,
            "at most so many"
        );
        assert_eq!(c.pop_oldest_while(usize::MAX, |_, v| *v < 9_990), 8_989);
        assert_eq!(c.len(), 11);
        assert_eq!(c.evicted(), 0);
        assert!(c.slots.room() < room / 16, "room given back");
        assert_eq!(c.peek(&5), Some(&5));
        assert_eq!(c.peek(&9_999), Some(&9_999));
        assert_eq!(c.peek(&4), None);
        let left: Vec<u32> = c.iter_oldest_first().map(|(k, _)| *k).collect();
        assert_eq!(
            left,
            [
                9_990, 9_991, 9_992, 9_993, 9_994, 9_995, 9_996, 9_997, 9_998, 9_999, 5
            ]
        );
        // It fills up again as before.
        for i in 20_000..30_000 {
            c.get_or_insert_mut(i, || i);
        }
        assert_eq!(c.len(), 10_011);
        assert_eq!(c.peek(&25_000), Some(&25_000));
    }

    /// The `lru::LruCache` tables leave their dead entries the same way: from the least
    /// recent end, while dead, at most so many.
    #[test]
    fn dead_entries_leave_an_lru_cache_from_its_least_recent_end() {
        let mut c = super::lru::<u32, u32>(100);
        for i in 1..=10 {
            c.put(i, i);
        }
        c.get(&2);
        assert_eq!(super::pop_lru_while(&mut c, 3, |v| *v < 5), 3);
        assert_eq!(
            super::pop_lru_while(&mut c, usize::MAX, |v| *v < 5),
            0,
            "5 is alive"
        );
        let left: Vec<u32> = c.iter().rev().map(|(k, _)| *k).collect();
        assert_eq!(left, [5, 6, 7, 8, 9, 10, 2]);
    }

    #[test]
    fn rings_start_with_room_for_one_then_double() {
        let mut r = std::collections::VecDeque::new();
        let mut caps = Vec::new();
        for i in 0..5u64 {
            super::ring_room_for_one(&mut r);
            r.push_back(i);
            caps.push(r.capacity());
        }
        assert_eq!(caps, [1, 2, 4, 4, 8]);
    }
}
