//! The GGUF reader on a small file holding every metadata value type and every supported
//! tensor type, mutated in 10,000 seeded ways (bit flips, truncation at and around every
//! field, counts, lengths and offsets set to edge values); and the tokenizer built from
//! GGUF metadata, on a vocabulary-only file mutated the same way.

use focus_model::Tokenizer;
use focus_model::gguf::GgufFile;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::Tally;
use crate::largest_allocation;

/// The file and where its fields are: `(offset, width)` of every count, length, type,
/// dimension and offset field, and the offsets where its sections and records begin.
struct Built {
    bytes: Vec<u8>,
    fields: Vec<(usize, usize)>,
    starts: Vec<usize>,
}

struct Writer {
    b: Vec<u8>,
    fields: Vec<(usize, usize)>,
    starts: Vec<usize>,
}

impl Writer {
    fn field(&mut self, bytes: &[u8]) {
        self.fields.push((self.b.len(), bytes.len()));
        self.b.extend_from_slice(bytes);
    }
    fn string(&mut self, s: &str) {
        self.field(&(s.len() as u64).to_le_bytes());
        self.b.extend_from_slice(s.as_bytes());
    }
    fn kv(&mut self, key: &str, ty: u32, value: &[u8]) {
        self.starts.push(self.b.len());
        self.string(key);
        self.field(&ty.to_le_bytes());
        self.b.extend_from_slice(value);
    }
}

/// Tensors as (name, GGUF dims, type id, bytes per block, elements per block).
const TENSORS: &[(&str, &[u64], u32, usize, usize)] = &[
    ("f32", &[8, 2], 0, 4, 1),
    ("f16", &[16], 1, 2, 1),
    ("q4_0", &[32, 2], 2, 18, 32),
    ("q4_1", &[32], 3, 20, 32),
    ("q8_0", &[64], 8, 34, 32),
    ("q4_k", &[256], 12, 144, 256),
    ("q6_k", &[256], 14, 210, 256),
    ("bf16", &[4, 1, 1], 30, 2, 1),
];

fn build() -> Built {
    let mut w = Writer {
        b: b"GGUF".to_vec(),
        fields: Vec::new(),
        starts: vec![0],
    };
    w.field(&3u32.to_le_bytes());
    w.field(&(TENSORS.len() as u64).to_le_bytes());
    w.field(&14u64.to_le_bytes());
    w.kv("general.architecture", 8, &{
        let mut v = 5u64.to_le_bytes().to_vec();
        v.extend(b"llama");
        v
    });
    w.kv("a.u8", 0, &[7]);
    w.kv("a.i8", 1, &[0xF0]);
    w.kv("a.u16", 2, &513u16.to_le_bytes());
    w.kv("a.i16", 3, &(-3i16).to_le_bytes());
    w.kv("a.u32", 4, &70000u32.to_le_bytes());
    w.kv("a.i32", 5, &(-9i32).to_le_bytes());
    w.kv("a.f32", 6, &1.5f32.to_le_bytes());
    w.kv("a.bool", 7, &[1]);
    w.kv("a.u64", 10, &(1u64 << 40).to_le_bytes());
    w.kv("a.i64", 11, &(-1i64).to_le_bytes());
    w.kv("a.f64", 12, &0.25f64.to_le_bytes());
    // Arrays: of u32, and of strings (each string's length is a field too).
    w.starts.push(w.b.len());
    w.string("a.array");
    w.field(&9u32.to_le_bytes());
    w.field(&4u32.to_le_bytes());
    w.field(&3u64.to_le_bytes());
    for v in [1u32, 2, 3] {
        w.b.extend(v.to_le_bytes());
    }
    w.starts.push(w.b.len());
    w.string("a.strings");
    w.field(&9u32.to_le_bytes());
    w.field(&8u32.to_le_bytes());
    w.field(&2u64.to_le_bytes());
    w.string("one");
    w.string("två");
    // The tensor directory, then the data, each tensor aligned to 32 bytes.
    let mut offset = 0u64;
    let mut data = Vec::new();
    let mut rng = StdRng::seed_from_u64(5);
    for &(name, dims, ty, block_bytes, per_block) in TENSORS {
        w.starts.push(w.b.len());
        w.string(name);
        w.field(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            w.field(&d.to_le_bytes());
        }
        w.field(&ty.to_le_bytes());
        w.field(&offset.to_le_bytes());
        let numel: u64 = dims.iter().product();
        let size = numel as usize / per_block * block_bytes;
        // Small finite scales: random bytes except that every byte pair stays below f16's
        // exponent range limit (the high byte of a pair below 0x7C).
        data.extend((0..size).map(|i| {
            let v: u8 = rng.random();
            if i % 2 == 1 { v % 0x7C } else { v }
        }));
        data.resize(data.len().next_multiple_of(32), 0);
        offset = data.len() as u64;
    }
    w.starts.push(w.b.len());
    w.b.resize(w.b.len().next_multiple_of(32), 0);
    w.starts.push(w.b.len());
    w.b.extend(data);
    w.starts.push(w.b.len());
    Built {
        bytes: w.b,
        fields: w.fields,
        starts: w.starts,
    }
}

/// Mutation `case` of `base`.
fn mutate(base: &Built, case: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(case);
    let mut b = base.bytes.clone();
    let edge = |rng: &mut StdRng, width: usize, len: usize| -> u64 {
        let max = if width == 8 {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        match rng.random_range(0..8) {
            0 => 0,
            1 => 1,
            2 => max,
            3 => max / 2 + 1,
            4 => len as u64,
            5 => len as u64 + 1,
            6 => rng.random_range(0..=len as u64 * 2),
            _ => rng.random::<u64>() & max,
        }
    };
    match case % 4 {
        // Bit flips anywhere.
        0 => {
            for _ in 0..rng.random_range(1..=8) {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
        }
        // Truncation at or near a field or section boundary.
        1 => {
            let mut cuts: Vec<usize> = base.starts.clone();
            cuts.extend(base.fields.iter().flat_map(|&(o, w)| [o, o + w / 2]));
            let at = cuts[rng.random_range(0..cuts.len())];
            let jitter = rng.random_range(0..3);
            b.truncate(at.saturating_sub(jitter).min(b.len()));
        }
        // One field set to an edge value.
        2 => {
            let (o, w) = base.fields[rng.random_range(0..base.fields.len())];
            let v = edge(&mut rng, w, b.len());
            b[o..o + w].copy_from_slice(&v.to_le_bytes()[..w]);
        }
        // Several fields and a few flips together.
        _ => {
            for _ in 0..rng.random_range(2..=4) {
                let (o, w) = base.fields[rng.random_range(0..base.fields.len())];
                let v = edge(&mut rng, w, b.len());
                b[o..o + w].copy_from_slice(&v.to_le_bytes()[..w]);
            }
            let i = rng.random_range(0..b.len());
            b[i] ^= 1 << rng.random_range(0..8);
        }
    }
    b
}

/// Opens `path` and dequantises every tensor; `Ok(tensors)` or the error's text.
fn read_all(path: &std::path::Path) -> Result<usize, String> {
    let g = GgufFile::open(path).map_err(|e| e.to_string())?;
    for t in &g.tensors {
        let v = g.dequantize(t);
        assert_eq!(v.len(), t.numel(), "{}", t.name);
    }
    Ok(g.tensors.len())
}

#[test]
fn gguf_reader_survives_10000_mutations() {
    let base = build();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, &base.bytes).unwrap();
    assert_eq!(
        read_all(&path),
        Ok(TENSORS.len()),
        "the unmutated file reads"
    );
    let mut tally = Tally::default();
    // A metadata array of u8 holds one value (32 bytes in memory) per byte of file, and
    // dequantising Q4_0 turns 18 bytes into 32 f32 values (7.1x), so no case may allocate
    // more at once than 32x its file plus 4 KiB (error messages).
    let mut over = Vec::new();
    let mut largest_seen = 0;
    // FOCUS_MUTATIONS=N runs a longer session (docs/reliability.md).
    let cases: u64 = std::env::var("FOCUS_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    for case in 0..cases {
        let bytes = mutate(&base, case);
        std::fs::write(&path, &bytes).unwrap();
        let ((), largest) = largest_allocation(|| tally.run(case, || read_all(&path)));
        largest_seen = largest_seen.max(largest);
        if largest > 32 * bytes.len() + 4096 {
            over.push((case, largest, bytes.len()));
        }
    }
    tally.assert_no_panic();
    assert!(
        over.is_empty(),
        "{} cases allocated too much at once (case, bytes, file size): {:?}",
        over.len(),
        &over[..over.len().min(10)]
    );
    eprintln!(
        "gguf mutations: {cases} cases, {} errors, {} opened and read, largest allocation {largest_seen} bytes (file {} bytes)",
        tally.errors,
        tally.loaded,
        base.bytes.len()
    );
    // Most mutations break the file; some (a flipped data bit, a changed value) leave a
    // readable one.
    assert!(
        tally.errors > cases / 2 && tally.loaded > 0,
        "errors {}, opened {}",
        tally.errors,
        tally.loaded
    );
}

/// Found by the mutations: a shape whose byte size wraps around to a small number passed
/// the bounds check, and dequantising it then asked for an impossible allocation.
#[test]
fn a_shape_whose_size_wraps_is_an_error() {
    let base = build();
    let mut b = base.bytes.clone();
    // The first tensor (f32, dims [8, 2]): its first dimension field follows the name's
    // length, the name and the dimension count.
    let mut entry = 3u64.to_le_bytes().to_vec();
    entry.extend(b"f32");
    let name = b.windows(entry.len()).position(|w| w == entry).unwrap();
    let dim = name + entry.len() + 4;
    b[dim..dim + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrap.gguf");
    std::fs::write(&path, &b).unwrap();
    let err = read_all(&path).unwrap_err();
    assert!(err.contains("tensor f32: size overflows"), "{err}");
}

/// GPT-2's byte-level alphabet: the character that stands for each byte.
fn byte_chars() -> Vec<char> {
    let mut next = 256u32;
    (0u32..256)
        .map(|b| {
            let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
            if printable {
                char::from_u32(b).unwrap()
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap()
            }
        })
        .collect()
}

/// A vocabulary-only GGUF: a byte-level BPE tokenizer (`gpt2` model, `smollm`
/// pre-tokenizer) with 256 byte tokens, five merges and three control tokens.
fn build_tokenizer() -> Built {
    let mut w = Writer {
        b: b"GGUF".to_vec(),
        fields: Vec::new(),
        starts: vec![0],
    };
    w.field(&3u32.to_le_bytes());
    w.field(&0u64.to_le_bytes());
    w.field(&7u64.to_le_bytes());
    let string_kv = |w: &mut Writer, key: &str, v: &str| {
        w.starts.push(w.b.len());
        w.string(key);
        w.field(&8u32.to_le_bytes());
        w.string(v);
    };
    let strings_kv = |w: &mut Writer, key: &str, items: &[String]| {
        w.starts.push(w.b.len());
        w.string(key);
        w.field(&9u32.to_le_bytes());
        w.field(&8u32.to_le_bytes());
        w.field(&(items.len() as u64).to_le_bytes());
        for s in items {
            w.string(s);
        }
    };
    let mut tokens: Vec<String> = byte_chars().iter().map(char::to_string).collect();
    let merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a"];
    tokens.extend(merges.iter().map(|m| m.replace(' ', "")));
    tokens.extend(["<|endoftext|>", "<|im_start|>", "<|im_end|>"].map(String::from));
    string_kv(&mut w, "tokenizer.ggml.model", "gpt2");
    string_kv(&mut w, "tokenizer.ggml.pre", "smollm");
    strings_kv(&mut w, "tokenizer.ggml.tokens", &tokens);
    strings_kv(&mut w, "tokenizer.ggml.merges", &merges.map(String::from));
    w.starts.push(w.b.len());
    w.string("tokenizer.ggml.token_type");
    w.field(&9u32.to_le_bytes());
    w.field(&5u32.to_le_bytes());
    w.field(&(tokens.len() as u64).to_le_bytes());
    for i in 0..tokens.len() {
        let ty: i32 = if i >= tokens.len() - 3 { 3 } else { 1 };
        w.b.extend(ty.to_le_bytes());
    }
    let specials = tokens.len() as u32 - 3;
    w.kv(
        "tokenizer.ggml.bos_token_id",
        4,
        &(specials + 1).to_le_bytes(),
    );
    w.kv(
        "tokenizer.ggml.eos_token_id",
        4,
        &(specials + 2).to_le_bytes(),
    );
    w.starts.push(w.b.len());
    Built {
        bytes: w.b,
        fields: w.fields,
        starts: w.starts,
    }
}

const TEXT: &str = "so the cat in a hat 2048 <|im_end|> naïve ✓";

/// Builds the tokenizer of the GGUF at `path`, encodes [`TEXT`] and decodes it back.
fn tokenize(path: &std::path::Path) -> Result<(Vec<u32>, String), String> {
    let g = GgufFile::open(path).map_err(|e| e.to_string())?;
    let tok = Tokenizer::from_gguf(&g).map_err(|e| e.to_string())?;
    let ids = tok.encode(TEXT, true).map_err(|e| e.to_string())?;
    let text = tok.decode(&ids).map_err(|e| e.to_string())?;
    Ok((ids, text))
}

#[test]
fn gguf_tokenizer_survives_10000_mutations() {
    let base = build_tokenizer();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.gguf");
    std::fs::write(&path, &base.bytes).unwrap();
    let (ids, text) = tokenize(&path).unwrap();
    // BOS, the merges applied (" the" is one token), digits one by one, the control token
    // whole, and the text back unchanged after the BOS string.
    let vocab = 256 + 5;
    assert_eq!(ids[0], vocab + 1, "{ids:?}");
    assert!(
        ids.contains(&(256 + 2)) && ids.contains(&(vocab + 2)),
        "{ids:?}"
    );
    assert_eq!(text, format!("<|im_start|>{TEXT}"));
    let mut tally = Tally::default();
    for case in 0..10_000 {
        std::fs::write(&path, mutate(&base, case)).unwrap();
        tally.run(case, || tokenize(&path));
    }
    tally.assert_no_panic();
    eprintln!(
        "gguf tokenizer mutations: 10000 cases, {} errors, {} built and round-tripped",
        tally.errors, tally.loaded
    );
    assert!(tally.errors > 5_000 && tally.loaded > 0);
}
