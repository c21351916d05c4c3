//! A cache of shared per-target state (profiles, balancers, endpoint
//! clients) that forgets targets nobody uses: each sweep removes the entries
//! that were neither looked up since the previous sweep nor are held by a
//! connection now, so a proxy that talked to many short-lived pods does not
//! keep their state (and their discovery watches) forever.
//!
//! And [`Kept`]: a few values kept by key, at most a bound, for the metric
//! handles and routing decisions the request path resolves once and finds
//! again (the keys are often the client's to choose, hence the bound);
//! [`KeptUnder`] forgets them when the policy or profile they were made
//! under changes.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

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

/// What a full [`Kept`] does with a newcomer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Keeps what it has: the newcomer is made again each time it comes.
    KeepOld,
    /// Forgets what it has and keeps the newcomer: for a set shared by
    /// many clients, so that ever new keys cannot keep common ones out.
    StartAfresh,
}

/// A few values kept by key, at most `max` (looked up by a linear scan:
/// these sets are small).
#[derive(Debug)]
pub struct Kept<K, V> {
    entries: Mutex<Vec<(K, V)>>,
    max: usize,
    when_full: WhenFull,
}

impl<K, V: Clone> Kept<K, V> {
    /// An empty set of at most `max` values.
    pub const fn new(max: usize, when_full: WhenFull) -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
            max,
            when_full,
        }
    }

    /// The value whose key `matches`, or the one `make` makes with its key
    /// (kept as [`WhenFull`] says when the set is full).
    pub fn get_or_insert_with(
        &self,
        matches: impl Fn(&K) -> bool,
        make: impl FnOnce() -> (K, V),
    ) -> V {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        find_or_make(&mut entries, self.max, self.when_full, matches, make)
    }

    /// How many values it keeps now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The value in `entries` whose key `matches`, or the one `make` makes,
/// kept as `when_full` says once there are `max`.
fn find_or_make<K, V: Clone>(
    entries: &mut Vec<(K, V)>,
    max: usize,
    when_full: WhenFull,
    matches: impl Fn(&K) -> bool,
    make: impl FnOnce() -> (K, V),
) -> V {
    if let Some((_, value)) = entries.iter().find(|(key, _)| matches(key)) {
        return value.clone();
    }
    let (key, value) = make();
    if entries.len() >= max {
        match when_full {
            WhenFull::KeepOld => return value,
            WhenFull::StartAfresh => entries.clear(),
        }
    }
    entries.push((key, value.clone()));
    value
}

/// A [`Kept`] whose values were made under one generation `G` (the policy
/// or profile they were resolved from, held so that keys may point into
/// it): a lookup under another generation forgets them all first.
#[derive(Debug)]
pub struct KeptUnder<G, K, V> {
    kept: Mutex<Generation<G, K, V>>,
    max: usize,
    when_full: WhenFull,
}

#[derive(Debug)]
struct Generation<G, K, V> {
    made_under: Option<G>,
    entries: Vec<(K, V)>,
}

impl<G: Clone, K, V: Clone> KeptUnder<G, K, V> {
    /// An empty set of at most `max` values.
    pub const fn new(max: usize, when_full: WhenFull) -> Self {
        Self {
            kept: Mutex::new(Generation {
                made_under: None,
                entries: Vec::new(),
            }),
            max,
            when_full,
        }
    }

    /// The value made under `generation` (as `same` compares them) whose
    /// key `matches`, or the one `make` makes.
    pub fn get_or_insert_with(
        &self,
        generation: &G,
        same: impl Fn(&G, &G) -> bool,
        matches: impl Fn(&K) -> bool,
        make: impl FnOnce() -> (K, V),
    ) -> V {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if !kept
            .made_under
            .as_ref()
            .is_some_and(|made_under| same(made_under, generation))
        {
            kept.made_under = Some(generation.clone());
            kept.entries.clear();
        }
        find_or_make(&mut kept.entries, self.max, self.when_full, matches, make)
    }

    /// How many values it keeps now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_set_keeps_its_own_or_starts_afresh_as_told() {
        for when_full in [WhenFull::KeepOld, WhenFull::StartAfresh] {
            let kept: Kept<u32, u32> = Kept::new(2, when_full);
            for key in 0..3 {
                assert_eq!(
                    kept.get_or_insert_with(|k| *k == key, || (key, key * 10)),
                    key * 10
                );
            }
            let first_kept = when_full == WhenFull::KeepOld;
            assert_eq!(kept.len(), if first_kept { 2 } else { 1 });
            // The value kept for a key is found, not made again.
            let found = kept.get_or_insert_with(|k| *k == 0, || (0, 99));
            assert_eq!(found, if first_kept { 0 } else { 99 });
        }
    }

    #[test]
    fn a_new_generation_forgets_what_the_old_one_made() {
        let kept: KeptUnder<Arc<&str>, u32, u32> = KeptUnder::new(4, WhenFull::KeepOld);
        let (first, second) = (Arc::new("first"), Arc::new("second"));
        assert_eq!(
            kept.get_or_insert_with(&first, Arc::ptr_eq, |k| *k == 1, || (1, 10)),
            10
        );
        // Found under the same generation, not made again.
        assert_eq!(
            kept.get_or_insert_with(&first, Arc::ptr_eq, |k| *k == 1, || (1, 99)),
            10
        );
        // Made again under another one (an equal value is another generation).
        let equal = Arc::new("first");
        assert_eq!(
            kept.get_or_insert_with(&equal, Arc::ptr_eq, |k| *k == 1, || (1, 11)),
            11
        );
        assert_eq!(
            kept.get_or_insert_with(&second, Arc::ptr_eq, |k| *k == 2, || (2, 20)),
            20
        );
        assert_eq!(
            kept.len(),
            1,
            "only what the newest generation made is kept"
        );
    }

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
