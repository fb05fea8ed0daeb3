//! The session logic against a fake model that records what it is asked to compute:
//! which tokens sit at which positions in each chunk cache, and what the local pass sees.

use std::cell::RefCell;

use focus_core::{
    ChunkMemory, CondensingModel, Decode, DiskStore, FocusConfig, Plan, PromptConfig, Reading,
    Sampler, Session,
};

const BOS: u32 = 1_000_000;

/// A cache row: (token, position) pairs. A candidate: (token, position, first token of its chunk).
type Row = Vec<(u32, usize)>;
type Candidate = (u32, usize, u32);
/// One local pass: the candidates it saw and its ids.
type LocalCall = (Vec<Candidate>, Vec<u32>);

#[derive(Default)]
struct Fake {
    /// Every local pass: the candidates it saw and its ids.
    local_calls: RefCell<Vec<LocalCall>>,
    /// Sizes of the chunk batches run at prefill.
    batch_sizes: RefCell<Vec<usize>>,
    /// Chunk tokens computed by each `chunk_kv` call.
    chunk_tokens: RefCell<Vec<usize>>,
    /// Steps that kept the local window (`local_step`).
    cached_steps: std::cell::Cell<usize>,
    /// One past the largest position any call computed.
    end: std::cell::Cell<usize>,
}

impl Fake {
    fn saw(&self, end: usize) {
        self.end.set(self.end.get().max(end));
    }
}

impl CondensingModel for Fake {
    type Cache = Vec<Row>;
    type Candidates = Vec<Candidate>;
    type Logits = usize;
    type ChunkKv = Row;

    fn chunk_kv(&self, chunks: &[&[u32]]) -> Vec<Row> {
        self.chunk_tokens
            .borrow_mut()
            .push(chunks.iter().map(|c| c.len()).sum());
        let n = chunks[0].len();
        assert!(
            chunks.iter().all(|c| c.len() == n),
            "a batch holds equal lengths"
        );
        self.saw(n);
        chunks
            .iter()
            .map(|c| c.iter().copied().zip(0..).collect())
            .collect()
    }

    fn extend_chunk_kv(&self, stored: &Row, keep: usize, chunk: &[u32]) -> Row {
        assert!(
            stored.len() >= keep
                && stored[..keep]
                    .iter()
                    .map(|&(t, _)| t)
                    .eq(chunk[..keep].iter().copied()),
            "an entry that begins like the chunk"
        );
        if keep < chunk.len() {
            self.chunk_tokens.borrow_mut().push(chunk.len() - keep);
            self.saw(chunk.len());
        }
        chunk.iter().copied().zip(0..).collect()
    }

    fn chunk_kv_bytes(&self, kv: &Row) -> usize {
        kv.len()
    }

    fn encode_chunk_kv(&self, kv: &Row) -> Vec<u8> {
        kv.iter()
            .flat_map(|&(t, p)| t.to_le_bytes().into_iter().chain((p as u32).to_le_bytes()))
            .collect()
    }

    fn decode_chunk_kv(&self, bytes: &[u8]) -> Option<Row> {
        bytes.len().is_multiple_of(8).then(|| {
            bytes
                .chunks_exact(8)
                .map(|b| {
                    let t = u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
                    let p = u32::from_le_bytes(b[4..].try_into().expect("4 bytes"));
                    (t, p as usize)
                })
                .collect()
        })
    }

    fn prefill_prompts(&self, chunks: &[&Row], prompt: &[u32]) -> (Self::Cache, Self::Candidates) {
        self.batch_sizes.borrow_mut().push(chunks.len());
        let n = chunks[0].len();
        let m = prompt.len();
        let cache = chunks
            .iter()
            .map(|c| {
                let mut row = (*c).clone();
                row.extend(prompt[..m - 1].iter().copied().zip(n..));
                row
            })
            .collect();
        let cands = chunks
            .iter()
            .map(|c| (prompt[m - 1], n + m - 1, c[0].0))
            .collect();
        self.saw(n + m);
        (cache, cands)
    }

    fn step_chunks(&self, cache: &mut Self::Cache, prev: u32, next: u32) -> Self::Candidates {
        cache
            .iter_mut()
            .map(|row| {
                let p = row.len();
                row.push((prev, p));
                self.saw(p + 2);
                (next, p + 1, row[0].0)
            })
            .collect()
    }

    fn local_pass(&self, candidates: &[&Self::Candidates], ids: &[u32]) -> (usize, Self::Cache) {
        let all: Vec<_> = candidates.iter().flat_map(|c| c.iter().copied()).collect();
        let c = all.len();
        self.saw(c + ids.len());
        self.local_calls.borrow_mut().push((all, ids.to_vec()));
        (ids.len(), vec![ids.iter().copied().zip(c..).collect()])
    }

    /// Records the call like a local pass whose ids are the kept rows and `token`.
    fn local_step(
        &self,
        candidates: &[&Self::Candidates],
        cache: &mut Self::Cache,
        token: u32,
    ) -> usize {
        let all: Vec<_> = candidates.iter().flat_map(|c| c.iter().copied()).collect();
        let p = all.len() + cache[0].len();
        cache[0].push((token, p));
        self.saw(p + 1);
        let ids = cache[0].iter().map(|&(t, _)| t).collect();
        self.local_calls.borrow_mut().push((all, ids));
        self.cached_steps.set(self.cached_steps.get() + 1);
        cache[0].len()
    }

    fn prefill(&self, ids: &[u32]) -> (usize, Self::Cache) {
        self.saw(ids.len());
        (ids.len(), vec![ids.iter().copied().zip(0..).collect()])
    }

    fn step(&self, cache: &mut Self::Cache, token: u32) -> usize {
        let p = cache[0].len();
        cache[0].push((token, p));
        self.saw(p + 1);
        p + 1
    }

    /// One-hot at the number of positions seen (mod 64): greedy decoding then emits the
    /// position count, which shows which logits each token was chosen from.
    fn logits_row(&self, logits: usize) -> Vec<f32> {
        let mut row = vec![0.0; 64];
        row[logits % 64] = 1.0;
        row
    }
}

fn input(len: usize) -> Vec<u32> {
    std::iter::once(BOS).chain(1..len as u32).collect()
}

#[test]
fn plan_covers_every_token_once_in_order() {
    for (len, w, s) in [
        (100, 30, 16),
        (100, 30, 7),
        (31, 30, 16),
        (30, 30, 16),
        (5, 30, 16),
        (1000, 64, 64),
    ] {
        let ids = input(len);
        let cfg = FocusConfig::new(w, s);
        let plan = Plan::new(&ids, &cfg, BOS).unwrap();
        let mut covered: Vec<usize> = plan.chunks.iter().flat_map(|c| c.clone()).collect();
        covered.extend(plan.local.clone());
        assert_eq!(
            covered,
            (0..len).collect::<Vec<_>>(),
            "len {len} w {w} s {s}"
        );
        assert_eq!(plan.num_chunks(), len.saturating_sub(w).div_ceil(s));
        assert!(plan.chunks.iter().all(|c| c.len() <= s && !c.is_empty()));
        let p = 512.min(s).min(w).min(len);
        assert_eq!(plan.prompt[0], BOS);
        assert_eq!(&plan.prompt[1..], &ids[len - p..]);
    }
}

/// Pieces (a chat's messages): a piece of at least S tokens starts a chunk of its own, and
/// its chunks are the same whatever came before it; shorter pieces stay in the chunks
/// around them.
#[test]
fn long_pieces_are_chunked_from_their_own_start() {
    let cfg = FocusConfig::new(30, 16);
    let chunks = |ids: &[u32], starts: &[usize]| {
        let plan = Plan::with_pieces(ids, starts, &cfg, BOS).unwrap();
        let covered: Vec<usize> = plan.chunks.iter().flat_map(|c| c.clone()).collect();
        assert_eq!(covered, (0..ids.len() - 30).collect::<Vec<_>>());
        assert!(plan.chunks.iter().all(|c| c.len() <= 16 && !c.is_empty()));
        plan.chunks
    };
    // A 5-token system turn, a 40-token document, a 3-token turn, then a 40-token turn
    // (the window's 30 tokens among them): the two long turns start chunks; the short turn
    // stays in the document's last chunk.
    let ids = input(88);
    assert_eq!(
        chunks(&ids, &[5, 45, 48]),
        [0..5, 5..21, 21..37, 37..48, 48..58]
    );
    // The same document after a 9-token system turn: the same chunks of its tokens.
    let doc = &ids[5..45];
    let other: Vec<u32> = (500..509)
        .chain(doc.iter().copied())
        .chain(ids[45..].iter().copied())
        .collect();
    let got = chunks(&other, &[9, 49, 52]);
    let docs = |ids: &[u32], c: &[std::ops::Range<usize>]| -> Vec<Vec<u32>> {
        c.iter()
            .map(|r| ids[r.clone()].to_vec())
            .filter(|t| t.len() == 16)
            .take(2)
            .collect()
    };
    assert_eq!(docs(&other, &got[1..]), docs(&ids, &[5..21, 21..37]));
    // Without starts, or with only short pieces: the uniform cut.
    let uniform = chunks(&ids, &[]);
    assert_eq!(uniform, [0..16, 16..32, 32..48, 48..58]);
    assert_eq!(chunks(&ids, &[70, 80]), uniform);
    assert_eq!(Plan::new(&ids, &cfg, BOS).unwrap().chunks, uniform);
}

#[test]
fn prefill_and_steps_follow_the_spec() {
    let (len, w, s) = (100, 30, 16); // M = 70 -> chunks 16,16,16,16,6; p = 16
    let ids = input(len);
    let cfg = FocusConfig::new(w, s).with_max_batch(3);
    let fake = Fake::default();
    let (mut session, _) = Session::prefill(&fake, &cfg, BOS, &ids, |_, _| {}).unwrap();
    assert_eq!(*fake.batch_sizes.borrow(), vec![3, 1, 1]);
    let plan = session.plan().unwrap().clone();
    let p = 16;
    let generated = [7001, 7002, 7003];
    for t in 0..=generated.len() {
        if t > 0 {
            session.step(generated[t - 1]);
        }
        // Chunk caches: chunk ‖ BOS ‖ last p tokens (without the current candidate) ‖ g_1..g_{t-1}.
        let rows: Vec<&Row> = session.chunk_caches().into_iter().flatten().collect();
        assert_eq!(rows.len(), 5);
        for (j, row) in rows.iter().enumerate() {
            let mut expected: Vec<u32> = ids[plan.chunks[j].clone()].to_vec();
            expected.push(BOS);
            expected.extend(&ids[len - p..]);
            expected.extend(&generated[..t]);
            expected.pop(); // the newest token is the candidate, not in the cache
            let tokens: Vec<u32> = row.iter().map(|x| x.0).collect();
            assert_eq!(tokens, expected, "chunk {j} at step {t}");
            assert!(
                row.iter().enumerate().all(|(i, x)| x.1 == i),
                "positions 0.. in chunk {j}"
            );
        }
        // The local pass: candidates in chunk order, each the newest token at the next position.
        let calls = fake.local_calls.borrow();
        let (cands, local) = calls.last().unwrap();
        let newest = if t == 0 {
            ids[len - 1]
        } else {
            generated[t - 1]
        };
        for (j, c) in cands.iter().enumerate() {
            assert_eq!(c.0, newest);
            assert_eq!(c.1, rows[j].len(), "candidate follows its cache");
            assert_eq!(c.2, ids[plan.chunks[j].start], "chunk order");
        }
        let mut expected_local = vec![BOS];
        expected_local.extend(&ids[len - w..]);
        expected_local.extend(&generated[..t]);
        assert_eq!(local, &expected_local);
    }
}

/// Chunk caches and local passes of a session after two steps, for comparisons.
fn trace(fake: &Fake, s: &mut Session<'_, Fake>) -> (Vec<Row>, Vec<LocalCall>) {
    s.step(5);
    s.step(6);
    let caches = s.chunk_caches().into_iter().flatten().cloned().collect();
    (caches, fake.local_calls.borrow().clone())
}

#[test]
fn a_document_memory_reuses_chunks_and_changes_nothing() {
    // One document, two questions: the memory's full chunks are the same, the last
    // (shorter) chunk and the window differ.
    let doc = input(300);
    let ask = |q: &[u32]| [doc.as_slice(), q].concat();
    let (a, b) = (
        ask(&[901, 902, 903]),
        ask(&[911, 912, 913, 914, 915, 916, 917]),
    );
    let cfg = FocusConfig::new(40, 25).with_max_batch(4);
    let mut memory = ChunkMemory::new(usize::MAX);
    let first = Fake::default();
    Session::prefill_with_memory(&first, &cfg, BOS, &a, &[], &mut memory, |_, _| {}).unwrap();
    // 263 memory tokens: 10 chunks of 25 and one of 13, all computed.
    assert_eq!(first.chunk_tokens.borrow().iter().sum::<usize>(), 263);
    assert_eq!((memory.len(), memory.bytes()), (11, 263));
    let second = Fake::default();
    let (mut s, _) =
        Session::prefill_with_memory(&second, &cfg, BOS, &b, &[], &mut memory, |_, _| {}).unwrap();
    // 267 memory tokens: the 10 full chunks come from the memory, only the new 17 are computed.
    assert_eq!(*second.chunk_tokens.borrow(), [17]);
    assert_eq!(memory.hits, 10);
    let with_memory = trace(&second, &mut s);
    let fresh = Fake::default();
    let (mut s, _) = Session::prefill(&fresh, &cfg, BOS, &b, |_, _| {}).unwrap();
    assert_eq!(with_memory, trace(&fresh, &mut s));
    // A budget of three full chunks keeps those used last: chunks 8, 9 and the short 10.
    let mut small = ChunkMemory::new(3 * 25);
    Session::prefill_with_memory(&Fake::default(), &cfg, BOS, &a, &[], &mut small, |_, _| {})
        .unwrap();
    let held: Vec<usize> = small.entries().iter().map(|(c, _)| c.len()).collect();
    let firsts: Vec<u32> = small.entries().iter().map(|(c, _)| c[0]).collect();
    assert_eq!((held, small.bytes()), (vec![25, 25, 13], 63));
    assert_eq!(firsts, [a[200], a[225], a[250]]);
}

/// The same document after two different preambles (a chat's system turns), cut by pieces:
/// the second reading computes only its own preamble's chunk and finds the document's.
#[test]
fn a_document_after_another_preamble_reuses_its_chunks() {
    let cfg = FocusConfig::new(40, 25).with_max_batch(4);
    let doc: Vec<u32> = (100..300).collect();
    let chat = |preamble: &[u32]| -> (Vec<u32>, Vec<usize>) {
        let ids: Vec<u32> = preamble
            .iter()
            .chain(&doc)
            .chain(&[901, 902, 903])
            .copied()
            .collect();
        (ids, vec![preamble.len(), preamble.len() + doc.len()])
    };
    let mut memory = ChunkMemory::new(usize::MAX);
    let read = |ids: &[u32], starts: &[usize], memory: &mut ChunkMemory<Row>| {
        let fake = Fake::default();
        Session::prefill_with_memory(&fake, &cfg, BOS, ids, starts, memory, |_, _| {}).unwrap();
        fake.chunk_tokens.into_inner().iter().sum::<usize>()
    };
    // Preamble of 7, then the document's 200 tokens, then 3: a memory of 170 tokens, the
    // preamble's chunk and the document's first 163 tokens (6 chunks of 25 and one of 13).
    let (a, starts_a) = chat(&[1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(read(&a, &starts_a, &mut memory), 170);
    // Preamble of 12: its chunk is new; the document's 7 chunks are found.
    let (b, starts_b) = chat(&(11..23).collect::<Vec<u32>>());
    let hits = memory.hits;
    assert_eq!(read(&b, &starts_b, &mut memory), 12);
    assert_eq!(memory.hits - hits, 7);
    // Cut uniformly, the same two readings share no chunk.
    let mut uniform = ChunkMemory::new(usize::MAX);
    read(&a, &[], &mut uniform);
    assert_eq!(read(&b, &[], &mut uniform), 175);
}

/// A passage repeated within one batch is computed once, and the reading is the same as
/// one that computes every chunk on its own (batches of one chunk).
#[test]
fn a_repeated_passage_is_computed_once_per_batch() {
    let passage: Vec<u32> = (10..35).collect();
    let mut ids = vec![BOS];
    ids.extend_from_slice(&passage[1..]);
    for _ in 0..5 {
        ids.extend_from_slice(&passage);
    }
    ids.extend(900..940);
    // 150 memory tokens of the same 25 in turn: six equal chunks, in batches of 4 and 2.
    let cfg = FocusConfig::new(40, 25).with_max_batch(4);
    let batched = Fake::default();
    let (mut s, _) = Session::prefill(&batched, &cfg, BOS, &ids, |_, _| {}).unwrap();
    let batched_trace = trace(&batched, &mut s);
    assert_eq!(*batched.batch_sizes.borrow(), [4, 2]);
    // The first chunk starts with BOS; the other five are the same tokens.
    assert_eq!(*batched.chunk_tokens.borrow(), [50, 25]);
    let one_by_one = Fake::default();
    let cfg = cfg.with_max_batch(1);
    let (mut s, _) = Session::prefill(&one_by_one, &cfg, BOS, &ids, |_, _| {}).unwrap();
    assert_eq!(*one_by_one.chunk_tokens.borrow(), [25; 6]);
    assert_eq!(batched_trace, trace(&one_by_one, &mut s));
}

/// A memory over a disk store, in a new process each time (a fresh memory over the same
/// folder): the second reading computes no chunk and sees exactly what a fresh reading
/// sees; a damaged entry is noted, computed again and written again; another model's
/// fingerprint finds nothing.
#[test]
fn a_disk_store_outlives_the_memory_and_survives_damage() {
    let dir = tempfile::tempdir().unwrap();
    let ids = [input(300), vec![901, 902, 903]].concat();
    let cfg = FocusConfig::new(40, 25).with_max_batch(4);
    let memory = |fingerprint: &[u8]| {
        ChunkMemory::new(usize::MAX)
            .with_store(DiskStore::open(dir.path(), 1 << 20, fingerprint).unwrap())
    };
    let read = |m: &mut ChunkMemory<Row>| {
        let fake = Fake::default();
        let (mut s, _) =
            Session::prefill_with_memory(&fake, &cfg, BOS, &ids, &[], m, |_, _| {}).unwrap();
        let computed: usize = fake.chunk_tokens.borrow().iter().sum();
        (computed, trace(&fake, &mut s))
    };
    let mut first = memory(b"fake");
    let (computed, fresh) = read(&mut first);
    assert_eq!(computed, 263);
    assert_eq!(first.store().unwrap().writes, 11);
    let mut again = memory(b"fake");
    assert_eq!(
        read(&mut again),
        (0, fresh.clone()),
        "all 11 chunks from the store"
    );
    assert_eq!((again.store().unwrap().hits, again.len()), (11, 11));
    assert!(again.take_notes().is_empty());
    // One entry cut short: noted, computed again (25 tokens), rewritten.
    let entry = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::metadata(p).unwrap().len() > 300)
        .unwrap();
    let bytes = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &bytes[..bytes.len() - 1]).unwrap();
    let mut damaged = memory(b"fake");
    assert_eq!(read(&mut damaged), (25, fresh.clone()));
    let notes = damaged.take_notes();
    assert!(
        notes.len() == 1 && notes[0].contains("truncated"),
        "{notes:?}"
    );
    assert_eq!(std::fs::read(&entry).unwrap(), bytes, "written again whole");
    // Another model's fingerprint shares nothing.
    assert_eq!(read(&mut memory(b"other")).0, 263);
}

#[test]
fn cached_window_decoding_keeps_the_prefill_rows() {
    let ids = input(100); // W = 30, S = 16: 5 chunks
    let mut cfg = FocusConfig::new(30, 16);
    cfg.decode = Decode::CachedWindow;
    let fake = Fake::default();
    let (mut s, _) = Session::prefill(&fake, &cfg, BOS, &ids, |_, _| {}).unwrap();
    for t in [7001, 7002, 7003] {
        s.step(t);
    }
    assert_eq!(fake.cached_steps.get(), 3);
    let calls = fake.local_calls.borrow();
    assert_eq!(calls.len(), 4, "one local pass, then one row per step");
    let (cands, local) = calls.last().unwrap();
    // Fresh candidates of every chunk for the newest token; the kept rows are the prefill's
    // window (BOS and the last 30 tokens) and the tokens fed since.
    assert!(cands.len() == 5 && cands.iter().all(|c| c.0 == 7003));
    let mut expected = vec![BOS];
    expected.extend(&ids[70..]);
    expected.extend([7001, 7002, 7003]);
    assert_eq!(local, &expected);
}

#[test]
fn batch_cap_does_not_change_what_is_computed() {
    let ids = input(333);
    let run = |b| {
        let fake = Fake::default();
        let (mut s, _) = Session::prefill(
            &fake,
            &FocusConfig::new(40, 25).with_max_batch(b),
            BOS,
            &ids,
            |_, _| {},
        )
        .unwrap();
        s.step(5);
        s.step(6);
        fake.local_calls.into_inner()
    };
    let one = run(1);
    assert_eq!(one, run(4));
    assert_eq!(one, run(100));
}

#[test]
fn short_input_is_plain_decoding() {
    let fake = Fake::default();
    let ids = input(20);
    let (mut s, logits) =
        Session::prefill(&fake, &FocusConfig::new(20, 8), BOS, &ids, |_, _| {}).unwrap();
    assert!(!s.uses_memory());
    assert_eq!(logits, 20);
    assert_eq!(s.step(9), 21);
    assert!(fake.local_calls.borrow().is_empty());
}

#[test]
fn bad_settings_and_empty_input_are_errors() {
    let fake = Fake::default();
    assert!(Session::prefill(&fake, &FocusConfig::new(0, 8), BOS, &input(5), |_, _| {}).is_err());
    assert!(Session::prefill(&fake, &FocusConfig::new(8, 0), BOS, &input(50), |_, _| {}).is_err());
    assert!(Session::prefill(&fake, &FocusConfig::new(8, 8), BOS, &[], |_, _| {}).is_err());
}

#[test]
fn the_generation_loop_samples_feeds_and_stops() {
    let ids = input(100);
    let cfg = FocusConfig::new(30, 16);
    let run = |max_new: usize, stop: &[u32], limit: usize| {
        let fake = Fake::default();
        let (mut s, logits) = Session::prefill(&fake, &cfg, BOS, &ids, |_, _| {}).unwrap();
        let row = fake.logits_row(logits);
        let mut seen = Vec::new();
        let out = s.generate(row, &mut Sampler::Greedy, max_new, stop, |t| {
            seen.push(t);
            seen.len() < limit
        });
        assert_eq!(seen, out, "every token reaches the callback");
        (out, s.generated().to_vec(), fake.local_calls.borrow().len())
    };
    // The local pass after the prefill sees BOS + 30 tokens: 31, then 32, 33, ...
    let (out, fed, passes) = run(4, &[], usize::MAX);
    assert_eq!(out, [31, 32, 33, 34]);
    assert_eq!(fed, [31, 32, 33], "the last token is not fed");
    assert_eq!(passes, 4);
    // A stop id ends generation and is kept; so does the callback's `false`.
    assert_eq!(run(10, &[33], usize::MAX).0, [31, 32, 33]);
    assert_eq!(run(10, &[], 2).0, [31, 32]);
    assert!(run(0, &[], usize::MAX).0.is_empty());
}

#[test]
fn baselines_read_the_kept_tokens_with_the_plain_decoder() {
    let ids = input(100);
    let fake = Fake::default();
    let (s, logits) = Session::read(&fake, Reading::Truncated(30), BOS, &ids, |_, _| {}).unwrap();
    assert!(s.plan().is_none() && !s.uses_memory());
    assert_eq!(logits, 31, "BOS and the last 30 tokens");
    // Full attention reads the ids as given: no BOS is added where the input has none.
    let (_, logits) = Session::read(&fake, Reading::Full, BOS, &ids[1..], |_, _| {}).unwrap();
    assert_eq!(logits, 99, "every token, nothing prepended");
    let (_, logits) = Session::read(&fake, Reading::Full, BOS, &ids, |_, _| {}).unwrap();
    assert_eq!(logits, 100, "the input's own BOS, not a second one");
    assert!(fake.local_calls.borrow().is_empty() && fake.batch_sizes.borrow().is_empty());
    let (s, _) = Session::read(
        &fake,
        Reading::Focus(FocusConfig::new(30, 16)),
        BOS,
        &ids,
        |_, _| {},
    )
    .unwrap();
    assert!(s.uses_memory() && s.plan().is_some_and(|p| p.num_chunks() == 5));
    assert!(Reading::Truncated(30).fits(32, 100, 1) && !Reading::Full.fits(32, 100, 1));
    // A window that is the whole input is read as given; one that cuts adds BOS.
    assert!(Reading::Full.fits(100, 99, 1) && Reading::Truncated(100).fits(100, 100, 0));
    assert!(!Reading::Truncated(100).fits(100, 101, 0));
}

/// Every reading's positions, as it reports them, against the largest position the model
/// is asked to compute (one past it), and FocusLLM's cached positions against the rows its
/// chunk caches hold. Inputs without a leading BOS, so that the BOS rule shows.
#[test]
fn readings_report_the_positions_the_model_sees() {
    let plain = |len: usize| -> Vec<u32> { (1..=len as u32).collect() };
    let focus = |w, s, cap| {
        Reading::Focus(FocusConfig {
            prompt: PromptConfig {
                cap,
                separator: None,
            },
            ..FocusConfig::new(w, s)
        })
    };
    // Pieces of 20, 25 and 50 tokens after 5: seven chunks where the uniform cut has five.
    let pieces: &[usize] = &[5, 25, 50];
    for (reading, len, starts) in [
        (focus(30, 16, 512), 100, &[][..]),
        (focus(30, 16, 512), 100, pieces),
        (focus(30, 7, 512), 100, &[]),
        (focus(30, 16, 4), 100, &[]),
        (focus(30, 40, 512), 31, &[]),
        (focus(200, 16, 512), 100, &[]),
        (Reading::Truncated(30), 100, &[]),
        (Reading::Truncated(30), 20, &[]),
        (Reading::Full, 100, &[]),
    ] {
        for new in [0, 3] {
            let fake = Fake::default();
            let ids = plain(len);
            let mut none = ChunkMemory::new(0);
            let (mut s, _) =
                Session::read_with_memory(&fake, reading, BOS, &ids, starts, &mut none, |_, _| {})
                    .unwrap();
            for t in 0..new {
                s.step(7 + t as u32);
            }
            let what = format!("{reading:?}, {len} tokens, pieces at {starts:?}, {new} new");
            assert_eq!(
                fake.end.get(),
                reading.piece_positions(len, starts, new),
                "{what}"
            );
            if starts.is_empty() {
                assert_eq!(reading.positions(len, new), fake.end.get(), "{what}");
            } else {
                assert_eq!(s.plan().map(|p| p.num_chunks()), Some(7), "{what}");
            }
            assert_eq!(s.uses_memory(), reading.uses_memory(len), "{what}");
            if let Reading::Focus(cfg) = reading
                && new == 0
                && starts.is_empty()
            {
                let rows: usize = s
                    .chunk_caches()
                    .iter()
                    .flat_map(|c| c.iter())
                    .map(Vec::len)
                    .sum();
                assert_eq!(rows, cfg.cached_positions(len), "{what}");
            }
        }
    }
}

/// A chunk that begins like a kept one (at least 64 tokens alike) is computed from where
/// they part, from the memory in RAM or from a disk store in a later process, and the
/// reading is the same as a fresh one; a chunk that is the start of a kept one is computed
/// not at all.
#[test]
fn a_chunk_that_begins_like_a_kept_one_is_computed_from_where_they_part() {
    // W = 40, S = 100: the document's last chunk ends where the window begins, so it moves
    // with the question's length.
    let doc = input(330);
    let ask = |q: usize| [doc.as_slice(), &vec![900; q]].concat();
    let cfg = FocusConfig::new(40, 100).with_max_batch(4);
    let dir = tempfile::tempdir().unwrap();
    let memory = || {
        ChunkMemory::new(usize::MAX)
            .with_store(DiskStore::open(dir.path(), 1 << 24, b"fake").unwrap())
    };
    let read = |m: &mut ChunkMemory<Row>, ids: &[u32]| {
        let fake = Fake::default();
        let (mut s, _) =
            Session::prefill_with_memory(&fake, &cfg, BOS, ids, &[], m, |_, _| {}).unwrap();
        let computed = fake.chunk_tokens.borrow().clone();
        let fresh = Fake::default();
        let (mut f, _) = Session::prefill(&fresh, &cfg, BOS, ids, |_, _| {}).unwrap();
        assert_eq!(
            trace(&fake, &mut s),
            trace(&fresh, &mut f),
            "as a fresh reading"
        );
        computed
    };
    // 3 tokens of question: memory 293 tokens, chunks of 100, 100 and 93, all computed.
    let mut ram = memory();
    assert_eq!(read(&mut ram, &ask(3)), [200, 93]);
    // 7 tokens: the last chunk is 97 tokens, its first 93 those of the kept one.
    assert_eq!(read(&mut ram, &ask(7)), [4]);
    assert_eq!((ram.extended, ram.extended_tokens), (1, 93));
    // A later process with the store only: 2 chunks found whole, the last (now 95 tokens)
    // from the store's 97-token entry, cut to its first 95 rows: nothing computed.
    let mut later = memory();
    assert_eq!(read(&mut later, &ask(5)), Vec::<usize>::new());
    let store = later.store().unwrap();
    assert_eq!(
        (store.hits, store.prefix_hits, later.extended_tokens),
        (2, 1, 95)
    );
    // 63 tokens alike are too few: the chunk is computed whole.
    let mut other = [doc[..263].to_vec(), vec![7; 67]].concat();
    other.extend([900; 3]);
    let mut fresh = ChunkMemory::new(usize::MAX);
    read(&mut fresh, &ask(3));
    assert_eq!(read(&mut fresh, &other), [93]);
}
