//! Helpers shared by the end-to-end tests.

// Each test file includes this module and uses only part of it.
#![allow(dead_code)]

use std::path::PathBuf;

use assert_cmd::Command;
use serde_json::Value;

/// The repository root. `cargo test` sets `CARGO_MANIFEST_DIR` when it runs a test, which stays
/// right when the checkout moves (cargo does not rebuild for a moved workspace); the
/// compile-time value is the fallback.
pub fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("..")
}

/// The default model, or `None` when it has not been fetched (see [`present`]).
pub fn smollm2() -> Option<PathBuf> {
    let assets = std::env::var("FOCUS_ASSETS").unwrap_or_else(|_| ".assets".into());
    present(
        root().join(assets).join("SmolLM2-135M-Instruct.Q4_1.gguf"),
        "scripts/fetch-assets.sh",
    )
}

/// `path` if it exists; else `None`, and the test calling this is skipped with a note naming
/// the command that provides it (where `FOCUS_REQUIRE_ASSETS` is set, as in CI, a missing
/// file fails instead).
pub fn present(path: PathBuf, command: &str) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("FOCUS_REQUIRE_ASSETS").is_none(),
        "{} missing: run {command} first",
        path.display()
    );
    eprintln!("skipped: {} missing (run {command})", path.display());
    None
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

pub fn tiny() -> String {
    fixture("tiny-llama").display().to_string()
}

pub fn focus() -> Command {
    let mut c = Command::cargo_bin("focus").expect("focus binary");
    c.env("BURN_DEVICE", "cpu").env_remove("FOCUS_LOG");
    c
}

/// Runs and returns stdout; panics with stderr on failure.
pub fn ok(args: &[&str]) -> String {
    let out = focus().args(args).output().expect("run focus");
    assert!(
        out.status.success(),
        "focus {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 stdout")
}

/// Runs a command that must fail: exit code 2, one line on stderr containing `needle`.
pub fn fails(args: &[&str], needle: &str) {
    let out = focus().args(args).output().expect("run focus");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "focus {args:?}: {err}");
    assert!(!err.contains("panicked"), "focus {args:?} panicked: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "focus {args:?}: expected one line, got {err}"
    );
    assert!(
        lines[0].contains(needle),
        "focus {args:?}: {:?} does not mention {needle:?}",
        lines[0]
    );
    // tempfile's wording when it names its temporary file, which is no concern of the user's.
    assert!(
        !lines[0].contains("at path \""),
        "focus {args:?}: a temporary file named in {:?}",
        lines[0]
    );
    // `--nocapture` lists every case and its message (docs/reliability.md's table).
    eprintln!("case: focus {} => {}", args.join(" "), lines[0]);
    assert!(
        lines[0].matches("(os error").count() <= 1,
        "focus {args:?}: a cause repeated in {:?}",
        lines[0]
    );
}

pub fn json(s: &str) -> Value {
    serde_json::from_str(s).expect("JSON output")
}

/// A copy of the tiny model with a small chat template.
pub fn tiny_chat(dir: &std::path::Path) -> String {
    let m = dir.join("chat");
    std::fs::create_dir(&m).expect("dir");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("tiny-llama").join(f), m.join(f)).expect("copy");
    }
    let tpl = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}\
               {% if add_generation_prompt %}assistant:{% endif %}";
    std::fs::write(
        m.join("tokenizer_config.json"),
        serde_json::json!({"chat_template": tpl}).to_string(),
    )
    .expect("write");
    m.display().to_string()
}
