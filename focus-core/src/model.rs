//! What FocusLLM asks of a decoder: the one trait between this crate and model code.

/// What FocusLLM needs from a decoder. `focus-model` implements it for the Llama
/// decoder; the tests of this crate implement it with a fake that records calls.
///
/// "Batch" below means several chunks of equal length decoded in one pass.
pub trait CondensingModel {
    /// Key/value cache of one sequence or of a batch of equally long sequences.
    type Cache;
    /// Candidate keys/values of a batch of chunks (one candidate per chunk, every layer).
    type Candidates;
    /// Next-token logits.
    type Logits;
    /// Keys and values of one chunk's own tokens (what a [`ChunkMemory`](crate::ChunkMemory) keeps).
    type ChunkKv: Clone;

    /// The keys and values of a batch of chunks' own tokens (equal lengths, positions
    /// `0..n`): one entry per chunk. They depend on nothing else.
    fn chunk_kv(&self, chunks: &[&[u32]]) -> Vec<Self::ChunkKv>;

    /// The keys and values of `chunk` (positions `0..n`) from those of its first `keep`
    /// tokens, the first `keep` rows of `stored` (an entry of a chunk that begins with the
    /// same `keep` tokens, `keep ≤ n`): only `chunk[keep..]` is computed, after them.
    fn extend_chunk_kv(&self, stored: &Self::ChunkKv, keep: usize, chunk: &[u32]) -> Self::ChunkKv;

    /// Bytes one entry holds (for a memory's budget).
    fn chunk_kv_bytes(&self, kv: &Self::ChunkKv) -> usize;

    /// One entry as bytes, for a [`crate::DiskStore`].
    fn encode_chunk_kv(&self, kv: &Self::ChunkKv) -> Vec<u8>;

    /// An entry from [`encode_chunk_kv`](Self::encode_chunk_kv)'s bytes, or `None` when
    /// they do not describe keys and values of this model.
    fn decode_chunk_kv(&self, bytes: &[u8]) -> Option<Self::ChunkKv>;

    /// Completes the prefill of a batch of chunks (equal lengths `n`) whose own tokens'
    /// keys and values are `chunks`: `prompt` (separator and dynamic prompt, the same for
    /// every chunk) at positions `n..`, its last row the candidate. Returns the caches of
    /// every row but the candidate, and the candidates.
    fn prefill_prompts(
        &self,
        chunks: &[&Self::ChunkKv],
        prompt: &[u32],
    ) -> (Self::Cache, Self::Candidates);

    /// One decode step of a batch of chunks: feeds `prev` (base projections) and `next`
    /// (the new candidate) after `cache`, appends `prev` to the cache, returns candidates.
    fn step_chunks(&self, cache: &mut Self::Cache, prev: u32, next: u32) -> Self::Candidates;

    /// The local pass: `ids` after the candidates of all chunks (in chunk order, at
    /// positions `0..C`), causally. Returns the last row's logits and the keys and values
    /// of the rows of `ids` (which [`Decode::CachedWindow`](crate::Decode::CachedWindow) keeps).
    fn local_pass(
        &self,
        candidates: &[&Self::Candidates],
        ids: &[u32],
    ) -> (Self::Logits, Self::Cache);

    /// [`Decode::CachedWindow`](crate::Decode::CachedWindow)'s step: `token` after the candidates (positions `0..C`) and
    /// the local rows kept in `cache` (positions `C..`), appended to `cache`.
    fn local_step(
        &self,
        candidates: &[&Self::Candidates],
        cache: &mut Self::Cache,
        token: u32,
    ) -> Self::Logits;

    /// Plain decoding (no memory): prefill `ids`, return logits and a cache.
    fn prefill(&self, ids: &[u32]) -> (Self::Logits, Self::Cache);

    /// Plain decoding: feed one token after `cache`.
    fn step(&self, cache: &mut Self::Cache, token: u32) -> Self::Logits;

    /// The next-token logits as one row of floats on the host (the one conversion every
    /// caller uses).
    fn logits_row(&self, logits: Self::Logits) -> Vec<f32>;
}
