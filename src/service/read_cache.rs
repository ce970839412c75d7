//! Recently read field rows and wrapped scope keys, as stored (ciphertext only: nothing here is
//! readable without the keys, exactly like SQLite's own page cache), so that an agent reading
//! the same secret again does not go through SQLite.
//!
//! A lookup that found no such field, or no such entry, is kept like a row, so that asking
//! for a field one may not read and for one that does not exist costs the same.
//!
//! Invariant: a cached row is served only while the store's commit generation equals the one
//! read before the row was fetched. Any commit (a write here, or a replicated batch) empties
//! the cache, and the store bumps the generation before it answers the writer, so nobody is
//! served a row older than a write they saw acknowledged.

use crate::metrics::{self, Cached};
use crate::store::FieldRow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Bounds on what is held; past them, rows are read but not kept until the next commit.
const MAX_BYTES: usize = 16 * 1024 * 1024;
const MAX_ROWS: usize = 65_536;

/// A field lookup as the store answered it, still sealed.
#[derive(Debug, Clone)]
pub enum StoredField {
    Row(Arc<FieldRow>),
    NoField,
    NoEntry,
}

#[derive(Default)]
pub struct ReadCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    bytes: usize,
    /// (entry id, field name)
    fields: HashMap<(String, String), StoredField>,
    /// (scope, agent id) -> the scope key wrapped under that agent's token
    scope_keys: HashMap<(String, String), Arc<Vec<u8>>>,
}

impl Inner {
    /// Whether the cache speaks for `generation`, emptying it first if the store has committed
    /// since it was filled. Never moves back: a caller holding an older generation misses.
    fn at(&mut self, generation: u64) -> bool {
        if generation > self.generation {
            self.fields.clear();
            self.scope_keys.clear();
            self.bytes = 0;
            self.generation = generation;
        }
        generation == self.generation
    }

    fn room_for(&mut self, n: usize) -> bool {
        if self.bytes + n > MAX_BYTES || self.fields.len() + self.scope_keys.len() >= MAX_ROWS {
            return false;
        }
        self.bytes += n;
        true
    }
}

impl ReadCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn field(&self, generation: u64, entry: &str, name: &str) -> Option<StoredField> {
        let found = {
            let mut c = self.lock();
            c.at(generation)
                .then(|| c.fields.get(&(entry.to_owned(), name.to_owned())).cloned())
                .flatten()
        };
        metrics::record_cache_lookup(Cached::Field, found.is_some());
        found
    }

    pub fn scope_key(&self, generation: u64, scope: &str, agent: &str) -> Option<Arc<Vec<u8>>> {
        let found = {
            let mut c = self.lock();
            c.at(generation)
                .then(|| {
                    c.scope_keys
                        .get(&(scope.to_owned(), agent.to_owned()))
                        .cloned()
                })
                .flatten()
        };
        metrics::record_cache_lookup(Cached::ScopeKey, found.is_some());
        found
    }

    /// `generation` is the one read *before* the row was fetched: if the store committed
    /// meanwhile, the next lookup carries a newer generation and empties the cache.
    pub fn keep_field(&self, generation: u64, entry: &str, name: &str, found: &StoredField) {
        let sealed = match found {
            StoredField::Row(row) => row.ciphertext.len(),
            StoredField::NoField | StoredField::NoEntry => 0,
        };
        let mut c = self.lock();
        if c.at(generation) && c.room_for(entry.len() + name.len() + sealed) {
            c.fields
                .insert((entry.to_owned(), name.to_owned()), found.clone());
        }
    }

    pub fn keep_scope_key(&self, generation: u64, scope: &str, agent: &str, key: &Arc<Vec<u8>>) {
        let mut c = self.lock();
        if c.at(generation) && c.room_for(key.len()) {
            c.scope_keys
                .insert((scope.to_owned(), agent.to_owned()), key.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absence_is_kept_like_a_row_until_the_next_commit() {
        let cache = ReadCache::default();
        cache.keep_field(1, "e", "missing", &StoredField::NoField);
        cache.keep_field(1, "gone", "f", &StoredField::NoEntry);
        assert!(matches!(
            cache.field(1, "e", "missing"),
            Some(StoredField::NoField)
        ));
        assert!(matches!(
            cache.field(1, "gone", "f"),
            Some(StoredField::NoEntry)
        ));
        assert!(
            cache.field(2, "e", "missing").is_none(),
            "a commit empties it"
        );
    }
}
