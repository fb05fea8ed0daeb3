//! Output files written atomically (checked before the work starts) and the progress bar.

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

/// A builder of temporary files that end up with the usual permissions once renamed into
/// place (`0o666` less the umask; tempfile's default is owner-only).
pub fn temp_file() -> tempfile::Builder<'static, 'static> {
    let mut b = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    b
}

/// "cannot write PATH: the operating system's reason".
fn cannot_write(path: &std::path::Path, e: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!("cannot write {}: {}", path.display(), plain(e))
}

/// A temporary file (name ending in `suffix`) in the folder of `path`, to be renamed over it.
pub fn temp_beside(path: &std::path::Path, suffix: &str) -> Result<tempfile::NamedTempFile> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    temp_file()
        .suffix(suffix)
        .tempfile_in(dir)
        .map_err(|e| cannot_write(path, e))
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, then rename).
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = temp_beside(path, "")?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(|e| cannot_write(path, e))?;
    tmp.persist(path).map_err(|e| cannot_write(path, e.error))?;
    Ok(())
}

/// Checks, before any work, that an output file can be written at `path`: not a folder, in
/// a folder where a file can be created. (The file itself is written atomically at the end.)
pub fn check_writable(path: &std::path::Path) -> Result<()> {
    if path.is_dir() {
        bail!("cannot write {}: it is a folder", path.display());
    }
    temp_beside(path, "")?;
    Ok(())
}

/// The operating system's message for `e`, without the temporary file's name that
/// `tempfile` adds to it.
pub fn plain(e: std::io::Error) -> std::io::Error {
    if e.raw_os_error().is_some() {
        return e;
    }
    // tempfile wraps the operating system's error in a private type whose message ends with
    // ` at path "<temporary file>"`.
    let msg = e.to_string();
    match msg.split_once(" at path \"") {
        Some((os, _)) => std::io::Error::new(e.kind(), os.to_string()),
        None => e,
    }
}

/// A progress bar on stderr (hidden when `hidden`).
pub fn progress_bar(hidden: bool, unit: &str) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {{bar:30}} {{pos}}/{{len}} {unit} {{elapsed}} (eta {{eta}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
