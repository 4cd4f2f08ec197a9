//! The accepted claims, tokenId → entry, kept in two parts: the entries densely in
//! fixed-size chunks, and a hash table of 4-byte slot numbers. A hash table's buckets are a
//! power of two, up to half of them empty; with the entries in the buckets (112 bytes each)
//! that spare room was a third of the index's memory at 1k and 10k tokens (BENCHMARKS.md),
//! with 20-byte buckets it is a few percent.

use std::collections::HashMap;

use super::{IdKey, TokenEntry};

/// Entries per chunk: a chunk is allocated whole, so fewer than this many slots are spare
/// (a chunk is 6 KiB).
const CHUNK: usize = 64;

#[derive(Default)]
pub(super) struct Accepted {
    slots: HashMap<IdKey, u32>,
    /// Each `CHUNK` long; slot `s` is `chunks[s / CHUNK][s % CHUNK]`.
    chunks: Vec<Box<[Option<TokenEntry>]>>,
    /// Slots emptied by a removal, used again first.
    free: Vec<u32>,
    /// Slots ever handed out.
    next: u32,
}

impl Accepted {
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn contains_key(&self, id: &IdKey) -> bool {
        self.slots.contains_key(id)
    }

    pub(super) fn get(&self, id: &IdKey) -> Option<&TokenEntry> {
        self.slots.get(id).and_then(|&slot| self.at(slot).as_ref())
    }

    /// Adds or replaces the entry of `id`; returns the one replaced.
    pub(super) fn insert(&mut self, id: IdKey, entry: TokenEntry) -> Option<TokenEntry> {
        if let Some(&slot) = self.slots.get(&id) {
            return self.at_mut(slot).replace(entry);
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            if self.next as usize == self.chunks.len() * CHUNK {
                self.chunks.push((0..CHUNK).map(|_| None).collect());
            }
            self.next += 1;
            self.next - 1
        });
        *self.at_mut(slot) = Some(entry);
        self.slots.insert(id, slot);
        None
    }

    pub(super) fn remove(&mut self, id: &IdKey) -> Option<TokenEntry> {
        let slot = self.slots.remove(id)?;
        self.free.push(slot);
        self.at_mut(slot).take()
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &TokenEntry> {
        self.chunks.iter().flat_map(|chunk| chunk.iter().flatten())
    }

    /// Keeps the entries for which `keep` is true.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&IdKey, &TokenEntry) -> bool) {
        let Accepted {
            slots,
            chunks,
            free,
            ..
        } = self;
        slots.retain(|id, &mut slot| {
            let entry = &mut chunks[slot as usize / CHUNK][slot as usize % CHUNK];
            let kept = entry.as_ref().is_some_and(|entry| keep(id, entry));
            if !kept {
                *entry = None;
                free.push(slot);
            }
            kept
        });
    }

    fn at(&self, slot: u32) -> &Option<TokenEntry> {
        &self.chunks[slot as usize / CHUNK][slot as usize % CHUNK]
    }

    fn at_mut(&mut self, slot: u32) -> &mut Option<TokenEntry> {
        &mut self.chunks[slot as usize / CHUNK][slot as usize % CHUNK]
    }
}
