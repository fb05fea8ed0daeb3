//! A document memory on disk: chunk keys and values kept across processes and restarts.
//!
//! A chunk's keys and values depend on its tokens and on nothing else of the input
//! ([`crate::memory`]), so they can be kept in files and read by any later process that
//! runs the same model the same way. An entry is keyed by the chunk's tokens and a
//! *fingerprint* of everything else its values depend on (the model's weights, the float
//! type, the backend), which the caller computes. Each file holds:
//!
//! | bytes | what |
//! |---|---|
//! | 8 | magic `FOCUSKV1` |
//! | 32 | SHA-256 of the fingerprint and the tokens (also the file's name, in hex) |
//! | 4 | token count `n` (little endian) |
//! | 4n | the tokens |
//! | 8 | payload length |
//! | 32 | SHA-256 of the payload |
//! | … | the payload (the model's encoding of the keys and values) |
//!
//! A file's name is the hex of a short hash of the fingerprint and the chunk's first
//! [`PREFIX`] tokens, then of the 32 bytes above. Entries whose chunks begin alike thus share
//! the start of their names, which is how [`DiskStore::get_prefix`] finds an entry that
//! begins like a chunk without reading the folder's files.
//!
//! A file is written under a temporary name and renamed into place, so a reader (in this
//! process or another sharing the folder) sees a whole entry or none. A read checks
//! everything above; a truncated, damaged or foreign file is removed and reported
//! ([`Lookup::Damaged`]), never used. The folder is kept within a byte budget, the least
//! recently used files (by modification time, which a read refreshes) removed first.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"FOCUSKV1";
const SUFFIX: &str = "kv";

/// Tokens an entry must share with a chunk, from its start, for [`DiskStore::get_prefix`]
/// to offer it; they also name its file's first part.
pub const PREFIX: usize = 64;

/// A folder of chunk entries within a byte budget.
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    budget: u64,
    fingerprint: [u8; 32],
    /// Bytes on disk as of the last scan of the folder, plus what this store wrote since
    /// (an upper bound when a write replaced an entry or another process removed some): the
    /// folder is scanned again only when this passes the budget.
    used: u64,
    /// Reads answered, reads that found nothing, damaged entries removed, entries written,
    /// and entries read for their first tokens ([`get_prefix`](Self::get_prefix)).
    pub hits: usize,
    pub misses: usize,
    pub damaged: usize,
    pub writes: usize,
    pub prefix_hits: usize,
}

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The entry's payload, checked.
    Found(Vec<u8>),
    /// No entry for this chunk.
    Missing,
    /// An entry that failed a check and was removed; why.
    Damaged(String),
}

/// Names of temporary files are unique within the process; the process id makes them unique
/// across processes.
static TEMP: AtomicU64 = AtomicU64::new(0);

impl DiskStore {
    /// Opens (creating it if needed) the folder `dir`, for entries made under `fingerprint`
    /// (see the module's notes), within `budget` bytes.
    pub fn open(dir: &Path, budget: u64, fingerprint: &[u8]) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        Self::opened(dir, budget, Sha256::digest(fingerprint).into())
    }

    /// The same folder opened again, as a later process would open it: the same
    /// fingerprint and budget, the counters at zero.
    pub fn reopen(&self) -> std::io::Result<Self> {
        Self::opened(&self.dir, self.budget, self.fingerprint)
    }

    fn opened(dir: &Path, budget: u64, fingerprint: [u8; 32]) -> std::io::Result<Self> {
        let mut store = Self {
            dir: dir.to_path_buf(),
            budget,
            fingerprint,
            used: 0,
            hits: 0,
            misses: 0,
            damaged: 0,
            writes: 0,
            prefix_hits: 0,
        };
        store.used = store.usage()?.0;
        Ok(store)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn key(&self, chunk: &[u32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.fingerprint);
        for t in chunk {
            h.update(t.to_le_bytes());
        }
        h.finalize().into()
    }

    /// The first part of the file names of entries whose chunks begin with `chunk`'s first
    /// [`PREFIX`] tokens (all of them if it is shorter).
    fn head(&self, chunk: &[u32]) -> String {
        hex(&self.key(&chunk[..chunk.len().min(PREFIX)])[..8])
    }

    fn path(&self, chunk: &[u32]) -> PathBuf {
        let name = format!("{}{}.{SUFFIX}", self.head(chunk), hex(&self.key(chunk)));
        self.dir.join(name)
    }

    /// Reads the entry of `chunk`.
    pub fn get(&mut self, chunk: &[u32]) -> Lookup {
        let found = self.read(chunk);
        match found {
            Lookup::Found(_) => self.hits += 1,
            Lookup::Missing => self.misses += 1,
            Lookup::Damaged(_) => {}
        }
        found
    }

    /// Reads the entry of `chunk`, removing (and counting) it when damaged.
    fn read(&mut self, chunk: &[u32]) -> Lookup {
        let key = self.key(chunk);
        let path = self.path(chunk);
        let Ok(bytes) = fs::read(&path) else {
            return Lookup::Missing;
        };
        match check(&bytes, &key, chunk).map(|p| p.len()) {
            Ok(len) => {
                // Marks the entry as just used, for the budget's order.
                if let Ok(f) = fs::File::options().append(true).open(&path) {
                    let _ = f.set_modified(SystemTime::now());
                }
                // The payload ends the file: keep it in place of a copy.
                let mut bytes = bytes;
                bytes.drain(..bytes.len() - len);
                Lookup::Found(bytes)
            }
            Err(why) => {
                self.damaged += 1;
                let _ = fs::remove_file(&path);
                Lookup::Damaged(format!("{}: {why}", path.display()))
            }
        }
    }

    /// The entry, other than `chunk`'s own, that shares the most first tokens with `chunk`
    /// (at least [`PREFIX`]): its payload (checked as [`get`](Self::get) checks) and how many
    /// tokens they share. Only the headers of entries whose names begin like `chunk`'s are
    /// read to choose it.
    pub fn get_prefix(&mut self, chunk: &[u32]) -> Option<(Vec<u8>, usize)> {
        if chunk.len() < PREFIX {
            return None;
        }
        let head = self.head(chunk);
        let own = self.path(chunk);
        let mut best: Option<(usize, Vec<u32>)> = None;
        for e in fs::read_dir(&self.dir).ok()?.flatten() {
            let path = e.path();
            let named_alike = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&head) && n.ends_with(SUFFIX));
            if !named_alike || path == own {
                continue;
            }
            let Some(tokens) = header(&path) else {
                continue;
            };
            let shared = tokens.iter().zip(chunk).take_while(|(a, b)| a == b).count();
            if shared >= PREFIX && best.as_ref().is_none_or(|(n, _)| shared > *n) {
                best = Some((shared, tokens));
            }
        }
        let (shared, tokens) = best?;
        match self.read(&tokens) {
            Lookup::Found(payload) => {
                self.prefix_hits += 1;
                Some((payload, shared))
            }
            _ => None,
        }
    }

    /// Writes the entry of `chunk` (replacing any), then removes the least recently used
    /// entries until the folder fits the budget. An entry larger than the budget is not
    /// written.
    pub fn put(&mut self, chunk: &[u32], payload: &[u8]) -> std::io::Result<()> {
        let key = self.key(chunk);
        let mut bytes = Vec::with_capacity(84 + 4 * chunk.len() + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&key);
        bytes.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        for t in chunk {
            bytes.extend_from_slice(&t.to_le_bytes());
        }
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&Sha256::digest(payload));
        bytes.extend_from_slice(payload);
        if bytes.len() as u64 > self.budget {
            return Ok(());
        }
        let n = TEMP.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!(".{}-{n}.tmp", std::process::id()));
        let written = fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
            .and_then(|()| fs::rename(&tmp, self.path(chunk)));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        self.writes += 1;
        self.used += bytes.len() as u64;
        if self.used > self.budget {
            self.evict()?;
        }
        Ok(())
    }

    /// Bytes and number of the entries on disk.
    pub fn usage(&self) -> std::io::Result<(u64, usize)> {
        let e = entries(&self.dir)?;
        Ok((e.iter().map(|(_, n, _)| n).sum(), e.len()))
    }

    /// The entries of the folder `dir`, made under any fingerprint, most recently used
    /// first; only their headers are read.
    pub fn list(dir: &Path) -> std::io::Result<Vec<Listed>> {
        let mut out: Vec<Listed> = entries(dir)?
            .into_iter()
            .map(|(last_used, bytes, file)| Listed {
                tokens: header_tokens(&file),
                file,
                bytes,
                last_used,
            })
            .collect();
        out.reverse();
        Ok(out)
    }

    /// Removes every entry of the folder `dir` and the temporary files of writers (a
    /// writer still at work then fails to rename its file and reports it; nothing is read
    /// half-written). Returns the files and bytes removed.
    pub fn clear(dir: &Path) -> std::io::Result<(usize, u64)> {
        let (mut files, mut bytes) = (0, 0);
        for e in fs::read_dir(dir)? {
            let e = e?;
            let path = e.path();
            let ours = path.extension().is_some_and(|x| x == SUFFIX || x == "tmp");
            if ours && let Ok(m) = e.metadata() {
                // Another process may have removed it already.
                if fs::remove_file(&path).is_ok() {
                    files += 1;
                    bytes += m.len();
                }
            }
        }
        Ok((files, bytes))
    }

    /// Scans the folder and removes the least recently used entries until it fits.
    fn evict(&mut self) -> std::io::Result<()> {
        let entries = entries(&self.dir)?;
        let mut total: u64 = entries.iter().map(|(_, n, _)| n).sum();
        for (_, n, path) in entries {
            if total <= self.budget {
                break;
            }
            // Another process may have removed it already.
            let _ = fs::remove_file(path);
            total -= n;
        }
        self.used = total;
        Ok(())
    }
}

/// One entry of a folder, as [`DiskStore::list`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub file: PathBuf,
    pub bytes: u64,
    /// Tokens of its chunk, from its header (`None`: not a readable entry).
    pub tokens: Option<usize>,
    pub last_used: SystemTime,
}

/// The entries' files in `dir`, least recently used first, with their sizes.
fn entries(dir: &Path) -> std::io::Result<Vec<(SystemTime, u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let path = e.path();
        if path.extension().is_some_and(|x| x == SUFFIX)
            && let Ok(m) = e.metadata()
        {
            out.push((m.modified()?, m.len(), path));
        }
    }
    out.sort();
    Ok(out)
}

/// An entry's file, read up to its token count, and that count, if it starts like an entry.
fn open_header(path: &Path) -> Option<(fs::File, usize)> {
    let mut file = fs::File::open(path).ok()?;
    let mut head = [0u8; 44];
    std::io::Read::read_exact(&mut file, &mut head).ok()?;
    (&head[..8] == MAGIC).then(|| {
        let n = u32::from_le_bytes(head[40..].try_into().expect("4 bytes"));
        (file, n as usize)
    })
}

/// The token count in an entry's header, if it starts like an entry.
fn header_tokens(path: &Path) -> Option<usize> {
    open_header(path).map(|(_, n)| n)
}

/// The chunk tokens in an entry's header, if it starts like an entry (nothing else is
/// checked: [`DiskStore::get`] checks the entry it reads).
fn header(path: &Path) -> Option<Vec<u32>> {
    use std::io::Read;
    let (mut file, n) = open_header(path)?;
    let mut tokens = vec![0u8; 4 * n.min(1 << 20)];
    file.read_exact(&mut tokens).ok()?;
    Some(
        tokens
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect(),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The payload of an entry's bytes, or why they are not the entry of `chunk` under `key`.
fn check<'a>(bytes: &'a [u8], key: &[u8; 32], chunk: &[u32]) -> Result<&'a [u8], String> {
    let mut at = 0;
    let mut take = |n: usize| -> Result<&'a [u8], String> {
        let s = bytes
            .get(at..at + n)
            .ok_or_else(|| format!("truncated at byte {at}"))?;
        at += n;
        Ok(s)
    };
    if take(8)? != MAGIC {
        return Err("not a chunk entry".into());
    }
    if take(32)? != key {
        return Err("made under another key".into());
    }
    let n = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
    if n != chunk.len() {
        return Err(format!("holds {n} tokens, the chunk has {}", chunk.len()));
    }
    let tokens = take(4 * n)?;
    if tokens
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .ne(chunk.iter().copied())
    {
        return Err("holds other tokens".into());
    }
    let len = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")) as usize;
    let sum = take(32)?.to_vec();
    let payload = take(len)?;
    if take(1).is_ok() {
        return Err("longer than its payload".into());
    }
    if Sha256::digest(payload).as_slice() != sum {
        return Err("its payload does not match its checksum".into());
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, budget: u64, fingerprint: &[u8]) -> DiskStore {
        DiskStore::open(dir, budget, fingerprint).unwrap()
    }

    #[test]
    fn entries_come_back_across_openings_and_only_for_their_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = store(dir.path(), 1 << 20, b"model a");
        assert_eq!(a.get(&[1, 2, 3]), Lookup::Missing);
        a.put(&[1, 2, 3], b"kv of 1 2 3").unwrap();
        drop(a);
        let mut a = store(dir.path(), 1 << 20, b"model a");
        assert_eq!(a.get(&[1, 2, 3]), Lookup::Found(b"kv of 1 2 3".to_vec()));
        assert_eq!(a.get(&[1, 2]), Lookup::Missing);
        let mut b = store(dir.path(), 1 << 20, b"model b");
        assert_eq!(b.get(&[1, 2, 3]), Lookup::Missing);
        assert_eq!((a.hits, a.misses, a.writes), (1, 1, 0));
    }

    #[test]
    fn a_damaged_entry_is_removed_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(dir.path(), 1 << 20, b"m");
        let chunk = [7u32, 8, 9];
        let path = s.path(&chunk);
        type Damage = fn(&mut Vec<u8>);
        let cases: [(&str, Damage); 5] = [
            ("truncated", |b| b.truncate(b.len() - 3)),
            ("checksum", |b| *b.last_mut().unwrap() ^= 1),
            ("tokens", |b| b[44] ^= 1),
            ("magic", |b| b[0] = b'X'),
            ("longer", |b| b.push(0)),
        ];
        for (what, damage) in cases {
            s.put(&chunk, b"payload").unwrap();
            let mut bytes = fs::read(&path).unwrap();
            damage(&mut bytes);
            fs::write(&path, &bytes).unwrap();
            assert!(matches!(s.get(&chunk), Lookup::Damaged(_)), "{what}");
            assert!(!path.exists(), "{what}: the damaged file is removed");
            assert_eq!(s.get(&chunk), Lookup::Missing, "{what}");
        }
        assert_eq!(s.damaged, 5);
    }

    #[test]
    fn the_folder_keeps_within_its_budget_least_recently_used_out() {
        let dir = tempfile::tempdir().unwrap();
        // Each entry: 84 bytes of header, 4 of token, 100 of payload.
        let mut s = store(dir.path(), 3 * 188, b"m");
        let payload = [0u8; 100];
        for t in 0..3 {
            s.put(&[t], &payload).unwrap();
            // Modification times one second apart, so the order is certain.
            let f = fs::File::options().append(true).open(s.path(&[t])).unwrap();
            f.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(t as u64 + 1))
                .unwrap();
        }
        assert_eq!(s.usage().unwrap(), (3 * 188, 3));
        // Reading 0 makes it the most recent; writing 3 then removes 1.
        assert!(matches!(s.get(&[0]), Lookup::Found(_)));
        s.put(&[3], &payload).unwrap();
        assert_eq!(s.usage().unwrap(), (3 * 188, 3));
        assert_eq!(s.get(&[1]), Lookup::Missing);
        assert!(matches!(s.get(&[0]), Lookup::Found(_)));
        // An entry larger than the whole budget is not written.
        s.put(&[4], &[0u8; 1000]).unwrap();
        assert_eq!(s.get(&[4]), Lookup::Missing);
        // No temporary file is left behind.
        let left = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_none_or(|x| x != SUFFIX)
            })
            .count();
        assert_eq!(left, 0);
    }

    #[test]
    fn a_folder_lists_and_clears_under_any_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = store(dir.path(), 1 << 20, b"model a");
        let mut b = store(dir.path(), 1 << 20, b"model b");
        a.put(&[1, 2, 3], b"kv a").unwrap();
        b.put(&[4, 5], b"kv b").unwrap();
        // A writer that died before its rename, and a file that is no entry of ours.
        fs::write(dir.path().join(".7-0.tmp"), b"half").unwrap();
        fs::write(dir.path().join("notes.txt"), b"keep").unwrap();
        let f = fs::File::options()
            .append(true)
            .open(a.path(&[1, 2, 3]))
            .unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH).unwrap();
        let listed = DiskStore::list(dir.path()).unwrap();
        let tokens: Vec<_> = listed.iter().map(|l| l.tokens).collect();
        assert_eq!(tokens, [Some(2), Some(3)], "most recently used first");
        assert_eq!(listed[1].bytes, 84 + 12 + 4);
        assert_eq!(
            DiskStore::clear(dir.path()).unwrap(),
            (3, 84 + 8 + 4 + 84 + 12 + 4 + 4)
        );
        assert!(DiskStore::list(dir.path()).unwrap().is_empty());
        assert!(dir.path().join("notes.txt").exists());
        assert_eq!(a.get(&[1, 2, 3]), Lookup::Missing);
    }
}
