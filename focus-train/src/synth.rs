//! Retrieval-shaped training documents: a fact (a number, a code, a name, a year) stated
//! once at a random depth of a haystack, and a question or a re-mention at the end whose
//! continuation is the fact's value and the full stop that ends the sentence, so that the
//! memory learns where an answer ends as well as what it is.
//!
//! The haystacks are the training texts (or repeated filler sentences of our own); the
//! phrasings are many, and none is an evaluation template: neither the passkey sentences
//! of `focus passkey`, the needle of `focus niah`, nor RULER's needles (a test checks
//! this against [`focus_eval::reserved::TEMPLATE_PHRASES`]). No number of the test split
//! of the evaluation keys ([`focus_eval::retrieval::Split`]) is ever a fact's value.

use focus_model::Tokenizer;
use rand::RngExt;
use rand::rngs::StdRng;

use focus_eval::retrieval::Split;

use crate::error::{Error, Result};
use crate::example::{Example, LossKind};

/// A fact and a way to ask for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    /// The sentence that states it, e.g. `The combination of the red safe is 4821.`
    pub statement: String,
    /// The text before the answer at the end, e.g. `What is the combination of the red
    /// safe? The combination is`.
    pub cue: String,
    /// The answer as it continues the cue: the value with its leading space and the full
    /// stop after it, e.g. ` 4821.`
    pub answer: String,
}

const NAMES: &[&str] = &[
    "Amara", "Bruno", "Chen", "Dalia", "Elias", "Farah", "Gustav", "Hana", "Ivo", "Jonas", "Keiko",
    "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Soren", "Talia", "Umar",
    "Vera", "Wendell", "Ximena", "Yusuf", "Zora", "Anselm", "Beatrix", "Cormac", "Delphine",
    "Emeka", "Freya", "Gideon", "Ingrid", "Jasper", "Leilani", "Magnus", "Noor",
];
const PLACES: &[&str] = &[
    "Lisbon",
    "Nairobi",
    "Oslo",
    "Quito",
    "Hanoi",
    "Tbilisi",
    "Adelaide",
    "Montreal",
    "Porto",
    "Kraków",
    "Valparaíso",
    "Reykjavik",
    "Marrakesh",
    "Tallinn",
    "Osaka",
    "Cusco",
    "Bergen",
    "Zanzibar",
    "Galway",
    "Ljubljana",
    "Tromsø",
    "Salvador",
    "Kyoto",
    "Windhoek",
];
const COLOURS: &[&str] = &[
    "red", "blue", "green", "amber", "violet", "silver", "copper", "ivory", "black", "white",
    "orange", "teal", "crimson", "golden",
];
const THINGS: &[&str] = &[
    "safe", "locker", "gate", "vault", "cabinet", "door", "trunk", "chest", "drawer", "shed",
    "box", "hatch",
];
const FILLER: &[&str] = &[
    "The river bends twice before it reaches the town.",
    "A light rain fell through most of the afternoon.",
    "The market opens early on the first day of the week.",
    "Old maps of the valley show a road that no longer exists.",
    "Most of the orchard was planted by the previous owner.",
    "The train was late again, as it often is in winter.",
    "Nobody remembers who painted the mural by the station.",
    "The library keeps its oldest books in a cool basement room.",
    "Wind from the hills carried the smell of fresh hay.",
    "The bakery on the corner sells out of bread by noon.",
];

fn pick<'a>(rng: &mut StdRng, xs: &[&'a str]) -> &'a str {
    xs[rng.random_range(0..xs.len())]
}

/// A number of `lo..hi` that is not a test-split evaluation key.
fn untested(rng: &mut StdRng, lo: u32, hi: u32) -> u32 {
    loop {
        let n = rng.random_range(lo..hi);
        if n >= 50_000 || Split::of_key(n) != Split::Test {
            return n;
        }
    }
}

fn number(rng: &mut StdRng) -> String {
    let digits = rng.random_range(3..=6u32);
    let lo = 10u32.pow(digits - 1);
    untested(rng, lo, lo * 10).to_string()
}

fn code(rng: &mut StdRng) -> String {
    let letters: String = (0..rng.random_range(2..=3))
        .map(|_| char::from(b'A' + rng.random_range(0..26u8)))
        .collect();
    format!("{letters}-{}", untested(rng, 10, 1000))
}

/// A random fact with one of its phrasings; `question` chooses between a question at the
/// end and a plain re-mention of the fact's subject.
pub fn fact(rng: &mut StdRng, question: bool) -> Fact {
    let name = pick(rng, NAMES);
    let place = pick(rng, PLACES);
    let colour = pick(rng, COLOURS);
    let thing = pick(rng, THINGS);
    let kind = rng.random_range(0..8u32);
    // (statement, question cue, re-mention cue, answer)
    let (statement, asked, mentioned, answer) = match kind {
        0 => {
            let n = number(rng);
            (
                format!("The combination of the {colour} {thing} is {n}."),
                format!("What is the combination of the {colour} {thing}? The combination is"),
                format!("To open the {colour} {thing}, the combination to use is"),
                n,
            )
        }
        1 => {
            let n = number(rng);
            (
                format!("{name} wrote down a number to keep: {n}."),
                format!("Which number did {name} write down to keep? {name} wrote"),
                format!("The number that {name} kept was"),
                n,
            )
        }
        2 => {
            let c = code(rng);
            (
                format!("Agent {name} carries the badge code {c}."),
                format!("What badge code does Agent {name} carry? The badge code is"),
                format!("At the checkpoint, Agent {name} showed the badge code"),
                c,
            )
        }
        3 => {
            let y = untested(rng, 1700, 2030).to_string();
            (
                format!("{name} moved to {place} in the year {y}."),
                format!("In which year did {name} move to {place}? It was in"),
                format!("{name} has lived in {place} since"),
                y,
            )
        }
        4 => (
            format!("The keeper of the {colour} lighthouse was a sailor named {name}."),
            "Who kept the {colour} lighthouse? It was a sailor named".replace("{colour}", colour),
            format!("Every night the {colour} lighthouse was lit by"),
            name.to_string(),
        ),
        5 => (
            format!("The spare key to the {thing} is hidden in {place}."),
            format!("Where is the spare key to the {thing} hidden? It is hidden in"),
            format!("To find the spare key to the {thing}, one must travel to"),
            place.to_string(),
        ),
        6 => {
            let n = number(rng);
            (
                format!("Room {n} is where the {colour} files are stored."),
                format!("Which room holds the {colour} files? The {colour} files are in room"),
                format!("Anyone looking for the {colour} files should go to room"),
                n,
            )
        }
        _ => {
            let n = untested(rng, 2, 100).to_string();
            (
                format!("{name} counted exactly {n} {colour} stones on the path."),
                format!("How many {colour} stones did {name} count? {name} counted"),
                format!("The number of {colour} stones on the path was"),
                n,
            )
        }
    };
    Fact {
        statement,
        cue: if question { asked } else { mentioned },
        answer: format!(" {answer}."),
    }
}

/// `n` sentences of the built-in filler, in random order, joined by spaces.
pub fn filler(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| FILLER[rng.random_range(0..FILLER.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

/// Token streams that hide the facts: the training texts, with the positions after which a
/// sentence ends (where a fact may be inserted), and the built-in filler.
#[derive(Debug, Clone)]
pub struct Haystack {
    /// The training texts, tokenised and joined.
    pub text: Stream,
    /// Built-in filler sentences, tokenised (about 20K tokens).
    pub filler: Stream,
}

/// A token stream and where its sentences start.
#[derive(Debug, Clone)]
pub struct Stream {
    /// The tokens.
    pub ids: Vec<u32>,
    /// `starts[i]`: token `i` begins a sentence (the token before it ends one).
    pub starts: Vec<bool>,
    /// The indices `i` where `starts[i]`.
    pub start_list: Vec<usize>,
}

impl Stream {
    fn new(tok: &Tokenizer, ids: Vec<u32>) -> Result<Self> {
        let mut starts = vec![false; ids.len()];
        for i in 1..ids.len() {
            starts[i] = tok.decode(&ids[i - 1..i])?.ends_with(['.', '!', '?', '\n']);
        }
        let start_list = (0..ids.len()).filter(|&i| starts[i]).collect();
        Ok(Self {
            ids,
            starts,
            start_list,
        })
    }

    /// `len` tokens from a random sentence start (wrapping around at the end), and the
    /// index of the first one.
    fn slice(&self, len: usize, rng: &mut StdRng) -> (Vec<u32>, usize) {
        let n = self.ids.len();
        let first = if self.start_list.is_empty() {
            0
        } else {
            self.start_list[rng.random_range(0..self.start_list.len())]
        };
        let out = (0..len).map(|i| self.ids[(first + i) % n]).collect();
        (out, first)
    }

    /// The first position in `want..=max` of a slice starting at `first` where a sentence
    /// starts, else `want`.
    fn snap(&self, first: usize, want: usize, max: usize) -> usize {
        let n = self.ids.len();
        (want..=max)
            .find(|&b| self.starts[(first + b) % n])
            .unwrap_or(want)
    }

    /// Block `b` of `pool` evenly spaced blocks of `len` tokens (each from the first
    /// sentence start at or after its even place, when one is near), and its first index.
    fn block(&self, pool: usize, b: usize, len: usize) -> (Vec<u32>, usize) {
        let n = self.ids.len();
        let even = b * n / pool.max(1);
        let first = (even + self.snap(even, 0, 64)) % n;
        ((0..len).map(|i| self.ids[(first + i) % n]).collect(), first)
    }

    /// `body` with `stmt` inserted at a sentence start near a random place in `lo..=hi`
    /// (`body` starts at index `first` of the stream).
    fn insert(
        &self,
        body: &mut Vec<u32>,
        first: usize,
        stmt: &[u32],
        lo: usize,
        hi: usize,
        rng: &mut StdRng,
    ) {
        let want = rng.random_range(lo..=hi);
        let at = self.snap(first, want, (want + 48).min(hi));
        body.splice(at..at, stmt.iter().copied());
    }
}

impl Haystack {
    /// Tokenises `texts` (joined by blank lines) and the filler; texts that evaluation
    /// keeps for itself are refused ([`crate::data::check_training_texts`]).
    pub fn new(tok: &Tokenizer, texts: &[(String, String)]) -> Result<Self> {
        crate::data::check_training_texts(texts)?;
        let joined: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
        let text = tok.encode(&joined.join("\n\n"), false)?;
        if text.is_empty() {
            return Err(Error::Input("the haystack texts are empty".into()));
        }
        let mut rng = <StdRng as rand::SeedableRng>::seed_from_u64(0x5EED);
        let filler = tok.encode(&filler(&mut rng, 2000), false)?;
        Ok(Self {
            text: Stream::new(tok, text)?,
            filler: Stream::new(tok, filler)?,
        })
    }
}

/// The shape of a retrieval document: `chunks` memory chunks of `chunk_len` tokens (the
/// last may be shorter) and a local span of at most `window - 2` tokens ending with the cue.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Memory chunks C.
    pub chunks: usize,
    /// Chunk length S.
    pub chunk_len: usize,
    /// Local window W.
    pub window: usize,
    /// Share of documents whose fact sits in the local span instead of the memory.
    pub local_share: f64,
    /// Most answer tokens supervised.
    pub max_targets: usize,
    /// Longest local span (at most `window - 2` counts).
    pub max_span: usize,
    /// Distinct haystack blocks per chunk length (0: any slice of the texts). With a pool,
    /// the memory is `chunks` whole chunks, each a pool block, one of them (unless the fact
    /// is in the span) with the fact inserted and cut back to the chunk length; the other
    /// chunks recur across documents, so their frozen keys are cached.
    pub pool: usize,
    /// With a pool: the share of documents whose fact statement is cut between two chunks,
    /// its first tokens ending one chunk and the rest beginning the next (the cut drawn
    /// uniformly inside the statement, so sometimes between the cue words and the value).
    pub straddle: f64,
}

/// A retrieval document and its example: `[BOS]? ‖ haystack with the fact ‖ cue ‖ answer`,
/// the memory everything before the span, the span the last ℓ tokens up to the cue, the
/// targets the answer's tokens.
pub fn document(
    tok: &Tokenizer,
    hay: &Haystack,
    layout: &Layout,
    add_bos: bool,
    rng: &mut StdRng,
) -> Result<(Vec<u32>, Example)> {
    if layout.chunks == 0 || layout.chunk_len == 0 || layout.window < 64 {
        return Err(Error::Input(format!(
            "no retrieval document fits {layout:?}"
        )));
    }
    let question = rng.random_bool(0.7);
    let f = fact(rng, question);
    let stmt = tok.encode(&format!(" {}", f.statement), false)?;
    let cue = tok.encode(&format!("\n{}", f.cue), false)?;
    let answer = tok.encode(&f.answer, false)?;
    let bos = usize::from(add_bos);
    let min_span = (cue.len() + 8).max(30).min(layout.window - 2);
    let cap = layout.max_span.min(layout.window - 2).max(min_span);
    let in_local = rng.random_bool(layout.local_share) && cap >= cue.len() + stmt.len() + 16;
    let lo = if in_local {
        cue.len() + stmt.len() + 16
    } else {
        min_span
    };
    let span = rng.random_range(lo.max(min_span)..=cap);
    let stream = if rng.random_bool(0.8) {
        &hay.text
    } else {
        &hay.filler
    };
    if layout.pool > 0 {
        let (mut x, memory) = pooled_memory(tok, stream, layout, &stmt, !in_local, add_bos, rng)?;
        let own = span - cue.len() - if in_local { stmt.len() } else { 0 };
        let (mut body, first) = stream.slice(own, rng);
        if in_local {
            stream.insert(&mut body, first, &stmt, 0, own, rng);
        }
        x.extend_from_slice(&body);
        x.extend_from_slice(&cue);
        return Ok(finish(x, memory, span, &answer, layout));
    }
    let most = layout.chunks * layout.chunk_len;
    let least = ((layout.chunks - 1) * layout.chunk_len + 1).max(stmt.len() + bos + 8);
    if least > most {
        return Err(Error::Input(format!(
            "chunks of {} tokens cannot hold a fact of {}",
            layout.chunk_len,
            stmt.len()
        )));
    }
    let memory = rng.random_range(least..=most);
    let hay_len = memory + span - cue.len() - stmt.len() - bos;
    let (mut body, first) = stream.slice(hay_len, rng);
    // The statement starts at a sentence start where one is near: wholly inside the
    // memory, or between the memory and the cue.
    let (lo, hi) = if in_local {
        (memory - bos, hay_len)
    } else {
        (0, (memory - bos).saturating_sub(stmt.len()))
    };
    stream.insert(&mut body, first, &stmt, lo, hi, rng);
    let mut x = Vec::with_capacity(memory + span + answer.len());
    if add_bos {
        x.push(tok.bos_id());
    }
    x.extend_from_slice(&body);
    x.extend_from_slice(&cue);
    Ok(finish(x, memory, span, &answer, layout))
}

/// The memory of a pooled document: `layout.chunks` whole chunks, each a random pool
/// block (after BOS in the first), the fact inserted into one of them when `with_fact`, or
/// (a `layout.straddle` share) cut between the end of one and the start of the next.
/// Returns the tokens and the memory length.
fn pooled_memory(
    tok: &Tokenizer,
    stream: &Stream,
    layout: &Layout,
    stmt: &[u32],
    with_fact: bool,
    add_bos: bool,
    rng: &mut StdRng,
) -> Result<(Vec<u32>, usize)> {
    let bos = usize::from(add_bos);
    if layout.chunk_len < stmt.len() + bos + 8 {
        return Err(Error::Input(format!(
            "chunks of {} tokens cannot hold a fact of {}",
            layout.chunk_len,
            stmt.len()
        )));
    }
    let memory = layout.chunks * layout.chunk_len;
    // (No draw without a straddling share, so runs saved before it see the same documents.)
    let straddle = with_fact
        && layout.chunks > 1
        && stmt.len() > 1
        && layout.straddle > 0.0
        && rng.random_bool(layout.straddle);
    let fact_chunk = rng.random_range(0..layout.chunks - usize::from(straddle));
    // Tokens of the statement that end the fact's chunk when it straddles.
    let cut = if straddle {
        rng.random_range(1..stmt.len())
    } else {
        0
    };
    let mut x = Vec::with_capacity(memory + layout.window);
    for j in 0..layout.chunks {
        let room = layout.chunk_len - if j == 0 { bos } else { 0 };
        let (mut block, first) = stream.block(layout.pool, rng.random_range(0..layout.pool), room);
        if with_fact && j == fact_chunk && straddle {
            block.truncate(room - cut);
            block.extend_from_slice(&stmt[..cut]);
        } else if with_fact && j == fact_chunk {
            stream.insert(&mut block, first, stmt, 0, room - stmt.len(), rng);
            block.truncate(room);
        } else if straddle && j == fact_chunk + 1 {
            block.splice(0..0, stmt[cut..].iter().copied());
            block.truncate(room);
        }
        if j == 0 && add_bos {
            x.push(tok.bos_id());
        }
        x.extend_from_slice(&block);
    }
    debug_assert_eq!(x.len(), memory);
    Ok((x, memory))
}

/// Appends the answer to `x` (memory ‖ span) and makes the example.
fn finish(
    mut x: Vec<u32>,
    memory: usize,
    span: usize,
    answer: &[u32],
    layout: &Layout,
) -> (Vec<u32>, Example) {
    debug_assert_eq!(x.len(), memory + span);
    let targets = answer.len().min(layout.max_targets.max(1));
    x.extend_from_slice(answer);
    (
        x,
        Example {
            kind: LossKind::Retrieval,
            start: memory,
            len: span,
            memory_end: memory,
            chunk_len: layout.chunk_len,
            decoded: 0,
            targets,
        },
    )
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    /// The evaluation templates never occur in training documents, answers end with a full
    /// stop, and no value is a test-split key.
    #[test]
    fn facts_avoid_the_evaluation_templates_and_test_keys() {
        let mut rng = StdRng::seed_from_u64(3);
        let banned = focus_eval::reserved::TEMPLATE_PHRASES;
        let mut kinds = std::collections::HashSet::new();
        let mut numbers = 0;
        for i in 0..5000 {
            let f = fact(&mut rng, i % 2 == 0);
            let text = format!("{} {}{}", f.statement, f.cue, f.answer).to_lowercase();
            for b in banned {
                assert!(!text.contains(b), "{text}");
            }
            let value = f.answer.trim().strip_suffix('.').expect("a full stop");
            assert!(f.statement.contains(value), "{f:?}");
            assert!(f.answer.starts_with(' ') && !value.ends_with('.'), "{f:?}");
            for n in value
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
            {
                let n: u32 = n.parse().expect("digits");
                assert!(n >= 50_000 || Split::of_key(n) == Split::Validation, "{n}");
                numbers += 1;
            }
            kinds.insert(f.cue.split_whitespace().next().map(str::to_string));
        }
        assert!(numbers > 3000, "{numbers}");
        assert!(kinds.len() >= 8, "phrasings: {kinds:?}");
        for s in FILLER {
            let s = s.to_lowercase();
            assert!(
                banned.iter().all(|b| !s.contains(b)) && !s.contains("grass"),
                "{s}"
            );
        }
    }
}
