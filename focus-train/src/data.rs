//! Training data: text files (or folders of `.txt` files), tokenised and packed into
//! sequences of random length between a minimum and a maximum.

use std::path::PathBuf;

use focus_model::Tokenizer;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::error::{Error, Result};

/// The text files named by `paths` (files, or folders whose `.txt` files are taken in
/// name order), as (name, text).
pub fn read_texts(paths: &[PathBuf]) -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(Error::io(p))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "txt"))
                .collect();
            inner.sort();
            if inner.is_empty() {
                return Err(Error::Input(format!("no .txt files in {}", p.display())));
            }
            files.extend(inner);
        } else {
            files.push(p.clone());
        }
    }
    files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).map_err(Error::io(f))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| Error::Input(format!("{} is not valid UTF-8", f.display())))?;
            Ok((f.display().to_string(), text))
        })
        .collect()
}

/// Refuses texts that evaluation keeps for itself: a held-out haystack (or any passage
/// of it) or an evaluation template ([`focus_eval::reserved`]). Every path from text to
/// training data ([`pack`], [`crate::synth::Haystack::new`]) goes through it.
pub fn check_training_texts(texts: &[(String, String)]) -> Result<()> {
    for (name, text) in texts {
        focus_eval::reserved::check_training_text(name, text).map_err(Error::Input)?;
    }
    Ok(())
}

/// Training sequences: checks `texts` ([`check_training_texts`]), tokenises them (no
/// special tokens) and cuts the stream of documents, each followed by the end-of-sequence
/// token, into consecutive sequences of random length in `min_len..=max_len` (drawn with
/// `seed`), each starting with BOS.
pub fn pack(
    tokenizer: &Tokenizer,
    texts: &[(String, String)],
    min_len: usize,
    max_len: usize,
    seed: u64,
) -> Result<Vec<Vec<u32>>> {
    check_training_texts(texts)?;
    pack_held_out(tokenizer, texts, min_len, max_len, seed)
}

/// The held-out sequences of a run's evaluation, cut as [`pack`] cuts training sequences
/// but from any text (the held-out book among them): they are scored, never trained on.
pub fn pack_held_out(
    tokenizer: &Tokenizer,
    texts: &[(String, String)],
    min_len: usize,
    max_len: usize,
    seed: u64,
) -> Result<Vec<Vec<u32>>> {
    if min_len < 2 || min_len > max_len {
        return Err(Error::Input(format!(
            "sequence lengths {min_len}..={max_len} are not a valid range"
        )));
    }
    let eos = tokenizer.eos_ids().first().copied();
    let mut stream = Vec::new();
    for (_, text) in texts {
        stream.extend(tokenizer.encode(text, false)?);
        stream.extend(eos);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let len = rng.random_range(min_len..=max_len);
        if at + len - 1 > stream.len() {
            break;
        }
        let mut seq = Vec::with_capacity(len);
        seq.push(tokenizer.bos_id());
        seq.extend_from_slice(&stream[at..at + len - 1]);
        out.push(seq);
        at += len - 1;
    }
    if out.is_empty() {
        return Err(Error::Input(format!(
            "the data has {} tokens, fewer than one sequence of {min_len}",
            stream.len()
        )));
    }
    Ok(out)
}
