//! A cache of shared per-target state (profiles, balancers, endpoint
//! clients) that forgets targets nobody uses: each sweep removes the entries
//! that were neither looked up since the previous sweep nor are held by a
//! connection now, so a proxy that talked to many short-lived pods does not
//! keep their state (and their discovery watches) forever.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// How often the proxy sweeps its caches.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `sweep` every [`SWEEP_EVERY`] until the returned task is aborted.
pub fn sweeper(sweep: impl Fn() + Send + 'static) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        loop {
            every.tick().await;
            sweep();
        }
    })
}

#[derive(Debug)]
struct Entry<V> {
    value: Arc<V>,
    used: bool,
}

/// The cache.
#[derive(Debug)]
pub struct IdleCache<K, V> {
    entries: Mutex<HashMap<K, Entry<V>>>,
}

impl<K, V> Default for IdleCache<K, V> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq, V> IdleCache<K, V> {
    /// The value for `key`, made by `make` when there is none.
    pub fn get_or_insert_with<Q>(&self, key: &Q, make: impl FnOnce() -> Arc<V>) -> Arc<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: ToOwned<Owned = K> + Hash + Eq + ?Sized,
    {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up by reference: a hit copies no key.
        if let Some(entry) = entries.get_mut(key) {
            entry.used = true;
            return entry.value.clone();
        }
        let value = make();
        entries.insert(
            key.to_owned(),
            Entry {
                value: value.clone(),
                used: true,
            },
        );
        value
    }

    /// Removes what was not used since the last sweep and is not held.
    pub fn sweep(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, entry| {
            std::mem::take(&mut entry.used) || Arc::strong_count(&entry.value) > 1
        });
    }

    /// How many entries there are.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_while_used_or_held() {
        let cache: IdleCache<String, u32> = IdleCache::default();
        let held = cache.get_or_insert_with("held", || Arc::new(1));
        cache.get_or_insert_with("busy", || Arc::new(2));
        cache.get_or_insert_with("idle", || Arc::new(3));
        cache.sweep();
        assert_eq!(cache.len(), 3, "all were used since the last sweep");
        cache.get_or_insert_with("busy", || Arc::new(0));
        cache.sweep();
        assert_eq!(cache.len(), 2, "the idle one went");
        cache.sweep();
        assert_eq!(cache.len(), 1, "the held one stays");
        drop(held);
        cache.sweep();
        assert!(cache.len() == 0);
    }
}
