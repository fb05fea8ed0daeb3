//! A document memory: the keys and values of memory chunks, kept between inputs.
//!
//! A chunk's tokens sit at positions `0..S` and see nothing before them, and its dynamic
//! prompt comes after them under causal attention: the keys and values of a chunk's own
//! tokens depend on those tokens alone, not on the question at the end of the input. A
//! later input whose memory holds the same chunk (the same document with another question,
//! or the same passage in another document) reuses them, and only the prompt rows of each
//! chunk (`[separator ‖ dynamic prompt]`) and the local pass are computed again.
//!
//! The keys and values of a chunk's first tokens depend on those tokens alone as well, so a
//! chunk that begins like a kept one (at least [`PREFIX`] tokens alike: a document's last,
//! partial chunk before another question, a conversation's last chunk one turn later) is
//! computed from where they part, after the kept rows.
//!
//! Entries are keyed by the chunk's exact tokens (so a hit is exact, never a hash
//! collision) and bounded by a budget, evicting the least recently used first. The budget is
//! in whatever unit [`ChunkMemory::insert`] is given: bytes for a session's memory, chunk
//! tokens for the training's cache.

use std::collections::HashMap;

use crate::model::CondensingModel;
use crate::store::{DiskStore, Lookup, PREFIX};

/// Chunk keys and values (`K`, the model's type) by chunk tokens, within a byte budget;
/// optionally over a [`DiskStore`], the slower tier that outlives the process.
#[derive(Debug)]
pub struct ChunkMemory<K> {
    entries: HashMap<Vec<u32>, Entry<K>>,
    budget: usize,
    bytes: usize,
    clock: u64,
    /// Lookups answered from the memory, and all lookups (chunks).
    pub hits: usize,
    pub lookups: usize,
    /// Chunks computed from a kept entry's first tokens, and the tokens so reused.
    pub extended: usize,
    pub extended_tokens: usize,
    store: Option<DiskStore>,
    /// What went wrong with the store since the last [`take_notes`](Self::take_notes): damaged
    /// entries (removed and computed again) and failed writes. Nothing of it changes a result.
    notes: Vec<String>,
}

#[derive(Debug, Clone)]
struct Entry<K> {
    kv: K,
    bytes: usize,
    used: u64,
}

impl<K: Clone> ChunkMemory<K> {
    /// A memory of at most `budget` bytes (0: nothing is kept).
    pub fn new(budget: usize) -> Self {
        Self {
            entries: HashMap::new(),
            budget,
            bytes: 0,
            clock: 0,
            hits: 0,
            lookups: 0,
            extended: 0,
            extended_tokens: 0,
            store: None,
            notes: Vec::new(),
        }
    }

    /// The memory over `store`: chunks missing here are looked up there
    /// ([`load`](Self::load)), and computed chunks are kept there too ([`save`](Self::save)).
    pub fn with_store(mut self, store: DiskStore) -> Self {
        self.store = Some(store);
        self
    }

    /// The disk store, if any.
    pub fn store(&self) -> Option<&DiskStore> {
        self.store.as_ref()
    }

    /// The chunk's keys and values from the disk store, made by `decode` from the entry's
    /// bytes (`None` from it counts as a damaged entry). Does not keep them in memory.
    pub fn load(&mut self, chunk: &[u32], decode: impl FnOnce(&[u8]) -> Option<K>) -> Option<K> {
        let store = self.store.as_mut()?;
        match store.get(chunk) {
            Lookup::Found(bytes) => {
                let kv = decode(&bytes);
                if kv.is_none() {
                    self.notes.push(format!(
                        "a chunk entry in {} does not decode for this model; computed again",
                        store.dir().display()
                    ));
                }
                kv
            }
            Lookup::Missing => None,
            Lookup::Damaged(why) => {
                self.notes
                    .push(format!("damaged chunk entry {why}; computed again"));
                None
            }
        }
    }

    /// Writes the chunk's keys and values (`encode`d) to the disk store, if any.
    pub fn save(&mut self, chunk: &[u32], encode: impl FnOnce() -> Vec<u8>) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        if let Err(e) = store.put(chunk, &encode()) {
            self.notes.push(format!(
                "cannot write a chunk entry in {}: {e}",
                store.dir().display()
            ));
        }
    }

    /// The keys and values of `chunks` (one batch: equal lengths) for `model`, in order:
    /// each from this memory, else from its disk store, else computed, each distinct chunk
    /// once (a passage repeated in the batch is read once). What is loaded or computed is
    /// kept here, and what is computed is written to the store.
    pub fn read<M: CondensingModel<ChunkKv = K>>(
        &mut self,
        model: &M,
        chunks: &[&[u32]],
    ) -> Vec<K> {
        let mut kv: Vec<Option<K>> = chunks.iter().map(|c| self.get(c)).collect();
        for (i, c) in chunks.iter().enumerate() {
            if kv[i].is_none()
                && let Some(loaded) = self.load(c, |b| model.decode_chunk_kv(b))
            {
                self.insert(c.to_vec(), loaded.clone(), model.chunk_kv_bytes(&loaded));
                kv[i] = Some(loaded);
            }
        }
        // The chunks still missing: the first of each distinct one, and the later copies.
        let (mut distinct, mut repeats) = (Vec::<usize>::new(), Vec::new());
        for i in (0..kv.len()).filter(|&i| kv[i].is_none()) {
            match distinct.iter().find(|&&d| chunks[d] == chunks[i]) {
                Some(&d) => repeats.push((i, d)),
                None => distinct.push(i),
            }
        }
        distinct.retain(|&i| match self.extend(model, chunks[i]) {
            Some(extended) => {
                kv[i] = Some(extended);
                false
            }
            None => true,
        });
        if !distinct.is_empty() {
            let rows: Vec<&[u32]> = distinct.iter().map(|&i| chunks[i]).collect();
            for (i, computed) in distinct.into_iter().zip(model.chunk_kv(&rows)) {
                let bytes = model.chunk_kv_bytes(&computed);
                self.save(chunks[i], || model.encode_chunk_kv(&computed));
                self.insert(chunks[i].to_vec(), computed.clone(), bytes);
                kv[i] = Some(computed);
            }
        }
        for (i, d) in repeats {
            kv[i] = kv[d].clone();
        }
        kv.into_iter()
            .map(|k| k.expect("every chunk read"))
            .collect()
    }

    /// `chunk`'s keys and values computed after those of the kept entry (here, else in the
    /// store) that shares the most first tokens with it, at least [`PREFIX`]; kept and
    /// written like computed ones. `None` when no entry begins like it.
    fn extend<M: CondensingModel<ChunkKv = K>>(&mut self, model: &M, chunk: &[u32]) -> Option<K> {
        if chunk.len() < PREFIX {
            return None;
        }
        let shared = |c: &[u32]| c.iter().zip(chunk).take_while(|(a, b)| a == b).count();
        let here = self
            .entries
            .iter()
            .map(|(c, e)| (shared(c), e))
            .filter(|&(n, _)| n >= PREFIX)
            .max_by_key(|&(n, _)| n)
            .map(|(n, e)| (n, e.kv.clone()));
        let here_len = here.as_ref().map_or(0, |(n, _)| *n);
        // The folder is searched only when it may hold a longer start.
        let stored = self
            .store
            .as_mut()
            .filter(|_| here_len < chunk.len())
            .and_then(|s| s.get_prefix(chunk))
            .filter(|(_, n)| *n > here_len);
        let (keep, kv) = match stored {
            Some((bytes, n)) => match model.decode_chunk_kv(&bytes) {
                Some(kv) => (n, kv),
                None => {
                    self.notes.push(
                        "a chunk entry in the store does not decode for this model; not used"
                            .into(),
                    );
                    here?
                }
            },
            None => here?,
        };
        let computed = model.extend_chunk_kv(&kv, keep, chunk);
        self.extended += 1;
        self.extended_tokens += keep;
        self.save(chunk, || model.encode_chunk_kv(&computed));
        self.insert(
            chunk.to_vec(),
            computed.clone(),
            model.chunk_kv_bytes(&computed),
        );
        Some(computed)
    }

    /// The store's problems since the last call (see the field's notes).
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// The keys and values of `chunk`, if kept; marks the entry as just used.
    pub fn get(&mut self, chunk: &[u32]) -> Option<K> {
        self.lookups += 1;
        self.clock += 1;
        let e = self.entries.get_mut(chunk)?;
        e.used = self.clock;
        self.hits += 1;
        Some(e.kv.clone())
    }

    /// Keeps `kv` (of `bytes` bytes) for `chunk`, evicting the least recently used entries
    /// until it fits. An entry larger than the whole budget is not kept.
    pub fn insert(&mut self, chunk: Vec<u32>, kv: K, bytes: usize) {
        if bytes > self.budget {
            return;
        }
        if let Some(old) = self.entries.remove(&chunk) {
            self.bytes -= old.bytes;
        }
        while self.bytes + bytes > self.budget {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
                .expect("entries remain while bytes are counted");
            let e = self.entries.remove(&oldest).expect("present");
            self.bytes -= e.bytes;
        }
        self.clock += 1;
        self.bytes += bytes;
        self.entries.insert(
            chunk,
            Entry {
                kv,
                bytes,
                used: self.clock,
            },
        );
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of chunks held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no chunk is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The chunks held and their keys and values, least recently used first (the order in
    /// which [`insert`](Self::insert) gets them back when a saved memory is read again).
    pub fn entries(&self) -> Vec<(&[u32], &K)> {
        let mut v: Vec<_> = self.entries.iter().collect();
        v.sort_by_key(|(_, e)| e.used);
        v.into_iter().map(|(k, e)| (k.as_slice(), &e.kv)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_first_within_the_budget() {
        let mut m = ChunkMemory::new(30);
        m.insert(vec![1], 'a', 10);
        m.insert(vec![2], 'b', 10);
        m.insert(vec![3], 'c', 10);
        assert_eq!(m.get(&[1]), Some('a')); // 1 is now the most recent
        m.insert(vec![4], 'd', 10); // evicts 2
        assert_eq!(m.get(&[2]), None);
        assert_eq!((m.len(), m.bytes()), (3, 30));
        m.insert(vec![5], 'e', 20); // evicts 3, then 1
        let kept: Vec<_> = m.entries().into_iter().map(|(k, v)| (k[0], *v)).collect();
        assert_eq!(kept, [(4, 'd'), (5, 'e')]);
        m.insert(vec![6], 'f', 31); // larger than the budget: not kept, nothing evicted
        assert_eq!((m.len(), m.bytes()), (2, 30));
        m.insert(vec![4], 'D', 5); // replacing an entry frees its bytes first
        assert_eq!((m.get(&[4]), m.bytes()), (Some('D'), 25));
        assert_eq!((m.hits, m.lookups), (2, 3));
        assert!(ChunkMemory::<u8>::new(0).is_empty());
    }
}
