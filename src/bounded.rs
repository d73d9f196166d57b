//! Bounded tables that grow as they fill: every table fed by log content is an LRU of
//! fixed size, but `lru::LruCache::new` reserves its whole capacity at once, which made
//! a replay of a small file, or a quiet daemon, pay for 100,000 addresses up front
//! (issue 17: an eighth of a short replay went to zeroing those pages).

use lru::LruCache;
use std::hash::Hash;
use std::num::NonZeroUsize;

/// An LRU of at most `cap` entries (at least one) that allocates only as it fills.
pub fn lru<K: Hash + Eq, V>(cap: usize) -> LruCache<K, V> {
    let mut c = LruCache::unbounded();
    c.resize(NonZeroUsize::new(cap.max(1)).unwrap_or(NonZeroUsize::MIN));
    c
}

/// Room for one more element in a per-address list: the first element gets room for
/// itself only, then the room doubles. The standard growth starts at four, and most
/// addresses of a botnet never get a second entry (issue 17: up to 160 bytes per
/// tracked address went to room never used).
pub fn room_for_one<T>(v: &mut Vec<T>) {
    if v.len() == v.capacity() {
        v.reserve_exact(v.len().max(1));
    }
}

/// [`room_for_one`] for a ring.
pub fn ring_room_for_one<T>(v: &mut std::collections::VecDeque<T>) {
    if v.len() == v.capacity() {
        v.reserve_exact(v.len().max(1));
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

    #[test]
    fn lists_start_with_room_for_one_then_double() {
        let mut v: Vec<u64> = Vec::new();
        let mut caps = Vec::new();
        for i in 0..5 {
            super::room_for_one(&mut v);
            v.push(i);
            caps.push(v.capacity());
        }
        assert_eq!(caps, [1, 2, 4, 4, 8]);
        let mut r = std::collections::VecDeque::new();
        super::ring_room_for_one(&mut r);
        r.push_back(1u64);
        assert_eq!(r.capacity(), 1);
    }
}
