//! The least arithmetic and memory traffic a reading needs: the floor any backend's time is
//! judged against (its roofline), from the model's shape alone.
//!
//! Arithmetic counts two operations per multiply-add in the projections, the head (the rows
//! read), the attention scores and their weighted sum, the last layer for the rows read
//! only; norms, rotary
//! embeddings, softmax and the candidate projections (one row per chunk) are left out, so
//! the count is a floor. Traffic counts every weight read once per pass, the cached keys and
//! values read once and the new ones written once; activations are left out, as a fused
//! implementation would keep them on chip.

use focus_core::{FocusConfig, Plan, Result};

use crate::config::LlamaConfig;

/// Operations and bytes of some work.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    pub flops: f64,
    pub bytes: f64,
}

impl std::ops::Add for Cost {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            flops: self.flops + o.flops,
            bytes: self.bytes + o.bytes,
        }
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Self>>(it: I) -> Self {
        it.fold(Self::default(), |a, b| a + b)
    }
}

impl Cost {
    /// The shortest time a device of `tflops` (10¹² operations a second) and `gbps` (10⁹
    /// bytes a second) can do this work in: whichever of the two takes longer.
    pub fn floor_seconds(&self, tflops: f64, gbps: f64) -> f64 {
        (self.flops / (tflops * 1e12)).max(self.bytes / (gbps * 1e9))
    }
}

/// Bytes per value of the weights and of the key/value caches.
#[derive(Debug, Clone, Copy)]
pub struct Widths {
    pub weights: usize,
    pub kv: usize,
}

impl LlamaConfig {
    /// One causal pass over `batch` sequences of `rows` new tokens each, after `past` cached
    /// positions, reading the output (and logits) of the last `read` rows of each sequence:
    /// the last layer needs every row's keys and values but the queries, attention, output
    /// projection and MLP of those rows alone (none of a chunk, whose keys and values are all
    /// that is kept; `LlamaForCausalLM::forward_last`).
    pub fn pass_cost(
        &self,
        batch: usize,
        rows: usize,
        past: usize,
        read: usize,
        w: Widths,
    ) -> Cost {
        let (d, ff, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        let kv_weights = (2 * d * kv) as f64;
        let out_weights = (2 * d * q + 3 * d * ff) as f64;
        let (b, rows_f, read_f) = (batch as f64, rows as f64, read.min(rows) as f64);
        // Query-key pairs of one sequence's last `n` rows: each sees the past and the rows up
        // to itself.
        let pairs = |n: f64| n * past as f64 + n * rows_f - n * (n - 1.0) / 2.0;
        let layers = self.num_hidden_layers as f64;
        let layer = |n: f64| 2.0 * out_weights * n + 4.0 * q as f64 * pairs(n);
        let flops = b
            * ((layers - 1.0) * layer(rows_f)
                + layer(read_f)
                + 2.0 * kv_weights * layers * rows_f
                + 2.0 * (d * v) as f64 * read_f);
        // The last layer's query, output and MLP weights and the head are read only when
        // some row's output is.
        let read_weights = if read > 0 {
            layers * out_weights + (d * v) as f64
        } else {
            (layers - 1.0) * out_weights
        };
        let weights = (read_weights + layers * kv_weights) * w.weights as f64;
        let kv_values = b * (past + rows) as f64;
        let bytes = weights + kv_values * self.kv_bytes_per_position(w.kv) as f64;
        Cost { flops, bytes }
    }

    /// A FocusLLM prefill of `len` tokens: the passes of the reading's own plan
    /// ([`Plan`]): every batch of chunks (each chunk with the separator and the dynamic
    /// prompt), then the local window, after BOS when there is a memory, attending to one
    /// candidate per chunk. An input within the window is one plain pass.
    pub fn focus_prefill_cost(&self, focus: &FocusConfig, len: usize, w: Widths) -> Result<Cost> {
        // The plan depends on the input's length only; BOS (1) differs from the ids (0), so
        // the window gets its BOS as a real input would.
        let ids = vec![0u32; len];
        let plan = Plan::new(&ids, focus, 1)?;
        let chunks: Cost = plan
            .batches(focus.max_batch)
            .into_iter()
            .map(|b| {
                let rows = plan.chunks[b.start].len() + plan.prompt.len();
                self.pass_cost(b.len(), rows, 0, 0, w)
            })
            .sum();
        let window = plan.local_input(&ids, 1).len();
        Ok(chunks + self.pass_cost(1, window, plan.num_chunks(), 1, w))
    }

    /// `n` plain decoding steps after `len` cached positions.
    pub fn decode_cost(&self, len: usize, n: usize, w: Widths) -> Cost {
        (0..n).map(|i| self.pass_cost(1, 1, len + i, 1, w)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F32: Widths = Widths { weights: 4, kv: 4 };

    #[test]
    fn a_pass_counts_two_operations_per_weight_and_token() {
        let cfg = LlamaConfig::smollm2_135m();
        // One token, nothing cached: every parameter but the norms is one multiply-add
        // (the tied head counted once, as the head), plus one query-key pair per head and
        // layer.
        let c = cfg.pass_cost(1, 1, 0, 1, F32);
        let params = cfg.num_params().expect("fits") as f64;
        let norms = (cfg.hidden_size * (2 * cfg.num_hidden_layers + 1)) as f64;
        let attention = 4.0 * (cfg.num_attention_heads * cfg.head_dim) as f64 * 30.0;
        assert_eq!(c.flops, 2.0 * (params - norms) + attention);
        assert_eq!(c.bytes, 4.0 * (params - norms) + 46_080.0);
        // Two sequences read the weights once and do twice the arithmetic.
        let two = cfg.pass_cost(2, 1, 0, 1, F32);
        assert_eq!(two.flops, 2.0 * c.flops);
        assert_eq!(two.bytes, c.bytes + 46_080.0);
    }

    #[test]
    fn the_last_layer_counts_only_the_rows_read() {
        let cfg = LlamaConfig::smollm2_135m();
        let (d, ff, v) = (576.0, 1536.0, 49_152.0);
        let q = 576.0;
        let every = cfg.pass_cost(1, 512, 0, 512, F32);
        let last = cfg.pass_cost(1, 512, 0, 1, F32);
        // 511 rows fewer through the last layer's query and output projections and MLP, and
        // their logits; their query-key pairs (those of all 512 rows but the last's 512).
        let spared = 511.0 * 2.0 * (2.0 * d * q + 3.0 * d * ff + d * v)
            + 4.0 * q * (512.0 * 513.0 / 2.0 - 512.0);
        assert_eq!(every.flops - last.flops, spared);
        assert_eq!(every.bytes, last.bytes);
        // Keys and values alone: neither the head nor the last layer's other weights are read.
        let kv_only = cfg.pass_cost(1, 512, 0, 0, F32);
        let unread = 4.0 * (2.0 * d * q + 3.0 * d * ff + d * v);
        assert_eq!(last.bytes - kv_only.bytes, unread);
    }

    #[test]
    fn focus_prefill_is_its_chunk_passes_and_the_window() {
        let cfg = LlamaConfig::smollm2_135m();
        // 10,000 tokens at W = S = 2048, p = 512: 7,952 memory tokens, three full chunks in
        // one batch and a last one of 1,808 tokens.
        let focus = FocusConfig::default();
        assert_eq!(focus.num_chunks(10_000), 4);
        let want = cfg.pass_cost(3, 2048 + 513, 0, 0, F32)
            + cfg.pass_cost(1, 1808 + 513, 0, 0, F32)
            + cfg.pass_cost(1, 2049, 4, 1, F32);
        assert_eq!(cfg.focus_prefill_cost(&focus, 10_000, F32).unwrap(), want);
        // Within the window: one plain pass.
        assert_eq!(
            cfg.focus_prefill_cost(&focus, 1000, F32).unwrap(),
            cfg.pass_cost(1, 1000, 0, 1, F32)
        );
        let c = Cost {
            flops: 2e12,
            bytes: 1e9,
        };
        assert_eq!(c.floor_seconds(1.0, 1.0), 2.0);
        assert_eq!(c.floor_seconds(4.0, 0.25), 4.0);
    }
}
