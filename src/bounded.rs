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
}
