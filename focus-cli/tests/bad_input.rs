//! The long tail of bad input, end to end: broken model directories, settings the model
//! cannot hold, candidate weights of another model, unwritable outputs, corrupt checkpoints
//! and an interrupted run. Each case: one line on stderr naming the problem, exit code 2,
//! nothing partial on disk. (The first cases, missing and garbage files, are in `tiny`.)

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{fails, fixture, focus, root, tiny};

/// A copy of the tiny model directory with `edit` applied to its `config.json`.
fn tiny_with(dir: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> String {
    let m = dir.join(name);
    std::fs::create_dir(&m).expect("dir");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("tiny-llama").join(f), m.join(f)).expect("copy");
    }
    let cfg = std::fs::read_to_string(m.join("config.json")).expect("read");
    let mut v: Value = serde_json::from_str(&cfg).expect("json");
    edit(&mut v);
    std::fs::write(m.join("config.json"), v.to_string()).expect("write");
    m.display().to_string()
}

/// A plain-text training file of about 6,000 bytes (tokens, for the byte-level tiny model).
fn text(dir: &Path) -> String {
    let p = dir.join("text.txt");
    let line = "The quick brown fox jumps over the lazy dog, and the dog sleeps on. ";
    std::fs::write(&p, line.repeat(90)).expect("write");
    p.display().to_string()
}

#[test]
fn model_files_that_describe_no_usable_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let generate =
        |m: &str, needle: &str| fails(&["generate", "--model", m, "--prompt", "x"], needle);
    let m = tiny_with(d, "heads0", |v| v["num_attention_heads"] = json!(0));
    generate(&m, "head counts must be positive");
    let m = tiny_with(d, "indivisible", |v| {
        v["num_attention_heads"] = json!(5);
        v.as_object_mut().expect("object").remove("head_dim");
    });
    generate(
        &m,
        "hidden_size 64 is not a multiple of num_attention_heads 5",
    );
    let m = tiny_with(d, "kv", |v| v["num_key_value_heads"] = json!(8));
    generate(
        &m,
        "num_attention_heads 4 is not a multiple of num_key_value_heads 8",
    );
    let m = tiny_with(d, "context", |v| {
        v["max_position_embeddings"] = json!(1e15 as u64)
    });
    generate(&m, "max_position_embeddings 1000000000000000 is outside");
    let m = tiny_with(d, "huge", |v| v["num_hidden_layers"] = json!(1u64 << 40));
    generate(&m, "parameters, more than");
    let m = tiny_with(d, "eps", |v| v["rms_norm_eps"] = json!(0));
    generate(&m, "rms_norm_eps 0 must be finite and positive");
    let m = tiny_with(d, "tok", |_| {});
    std::fs::write(Path::new(&m).join("tokenizer.json"), "{\"model\": [").expect("write");
    generate(&m, "tokenizer.json");
}

#[test]
fn settings_the_model_cannot_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |name: &str| dir.path().join(name).display().to_string();
    let t = tiny();
    #[rustfmt::skip]
    fails(&["generate", "--model", &t, "--prompt", "x", "--prompt-cap", "0"], "prompt");
    // The tiny model's context is 512 positions: a chunk and its dynamic prompt must fit.
    #[rustfmt::skip]
    fails(&["generate", "--model", &t, "--prompt", "x", "--chunk", "100000"], "context");
    // Candidate weights trained for SmolLM2 (576 wide) on the tiny model (64 wide).
    let other = root().join("assets/smollm2-135m-focus-w512-r8.safetensors");
    #[rustfmt::skip]
    fails(
        &["generate", "--model", &t, "--prompt", "x", "--focus-weights", &other.display().to_string()],
        "smollm2-135m-focus-w512-r8.safetensors: tensor model.layers.0.self_attn.beacon_q_lora.lora_a has shape [576, 8] in the file, the model needs [64, 8] (and 23 more",
    );
    #[rustfmt::skip]
    fails(&["passkey", "--model", &t, "--lengths", "0", "--json", &d("p.json")], "length");
    // A split that is neither: the command line's usage error, on one line, names the two.
    #[rustfmt::skip]
    fails(&["passkey", "--model", &t, "--split", "train"], "unknown split \"train\" (validation, test)");
    // Typed options name the values they take.
    #[rustfmt::skip]
    fails(&["passkey", "--model", &t, "--modes", "focus,window"], "[possible values: focus, truncated, full]");
    #[rustfmt::skip]
    fails(&["generate", "--model", &t, "--prompt", "x", "--separator", "nul"], "\"nul\" is not bos, eos or a token id");
    #[rustfmt::skip]
    fails(&["train", "--model", &t, "--data", &text(dir.path()), "--out", &d("r"), "--steps", "0"], "steps");
    #[rustfmt::skip]
    fails(
        &["train", "--model", &t, "--data", &text(dir.path()), "--out", &d("r"), "--distill=-1"],
        "the distillation weight -1 must be zero or positive",
    );
    assert!(!dir.path().join("p.json").exists() && !dir.path().join("r").exists());
}

#[test]
fn outputs_that_cannot_be_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |name: &str| dir.path().join(name).display().to_string();
    let t = tiny();
    // A file where a folder should be (permissions do not stop root, so this stands for
    // every unwritable place).
    std::fs::write(d("file"), "x").expect("write");
    let under = |name: &str| dir.path().join("file").join(name).display().to_string();
    #[rustfmt::skip]
    fails(&["passkey", "--model", &t, "--lengths", "300", "--trials", "1", "--json", &under("p.json")], "p.json: Not a directory (os error 20)");
    #[rustfmt::skip]
    fails(
        &["passkey", "--model", &t, "--lengths", "300", "--trials", "1", "--heatmap", &under("h.png")],
        "h.png: Not a directory (os error 20)",
    );
    // An existing folder where the JSON file should go.
    std::fs::create_dir(d("folder")).expect("dir");
    #[rustfmt::skip]
    fails(&["ppl", &text(dir.path()), "--model", &t, "--json", &d("folder")], "folder");
    #[rustfmt::skip]
    fails(
        &["train", "--model", &t, "--data", &text(dir.path()), "--out", &d("file"), "--local-window", "64",
          "--chunk-sizes", "32", "--prompt-cap", "32", "--min-len", "200", "--max-len", "400"],
        "file",
    );
    assert_eq!(std::fs::read(d("file")).expect("read"), b"x");
}

/// `train` arguments for a fast run on the tiny model that saves a checkpoint every step.
fn train_args(data: &str, out: &str, steps: &str) -> Vec<String> {
    [
        "train",
        "--model",
        &tiny(),
        "--data",
        data,
        "--out",
        out,
        "--local-window",
        "64",
        "--chunk-sizes",
        "32",
        "--prompt-cap",
        "32",
        "--min-len",
        "200",
        "--max-len",
        "400",
        "--batch",
        "1",
        "--steps",
        steps,
        "--save-every",
        "1",
        "--eval-every",
        "0",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn corrupt_checkpoints_and_interrupted_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = text(dir.path());
    let out = dir.path().join("run");
    let out_s = out.display().to_string();
    let args = train_args(&data, &out_s, "3");
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = focus().args(&a).output().expect("run");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // The run's state, garbled: --resume names the file.
    let state = out.join("checkpoint/state.json");
    let good = std::fs::read(&state).expect("state");
    std::fs::write(&state, &good[..good.len() / 2]).expect("write");
    let mut resume = a.clone();
    resume.push("--resume");
    fails(&resume, "state.json");
    std::fs::write(&state, &good).expect("write");
    let cands = out.join("checkpoint/candidates.safetensors");
    let bytes = std::fs::read(&cands).expect("read");
    std::fs::write(&cands, &bytes[..bytes.len() - 100]).expect("write");
    fails(&resume, "candidates.safetensors");

    // Killed at several moments of a run: the final weights file is either absent or whole,
    // and the checkpoint, when there is one, resumes to the end.
    for (i, ms) in [300u64, 900, 1500, 2500].into_iter().enumerate() {
        let out = dir.path().join(format!("killed{i}"));
        let out_s = out.display().to_string();
        let args = train_args(&data, &out_s, "12");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_focus"))
            .args(&args)
            .env("BURN_DEVICE", "cpu")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(ms));
        child.kill().expect("kill");
        child.wait().expect("wait");
        let weights = out.join("focus-weights.safetensors");
        if !weights.exists() && out.join("checkpoint").exists() {
            let mut resume = args.clone();
            resume.push("--resume".into());
            let r: Vec<&str> = resume.iter().map(String::as_str).collect();
            let run = focus().args(&r).output().expect("resume");
            assert!(
                run.status.success(),
                "resume after a kill at {ms} ms: {}",
                String::from_utf8_lossy(&run.stderr)
            );
        }
        if weights.exists() {
            let w = weights.display().to_string();
            #[rustfmt::skip]
            let run = focus()
                .args(["generate", "--model", &tiny(), "--focus-weights", &w, "--prompt", "x", "--max-new-tokens", "1"])
                .output()
                .expect("generate");
            assert!(
                run.status.success(),
                "weights after a kill at {ms} ms: {}",
                String::from_utf8_lossy(&run.stderr)
            );
        }
    }
}

#[test]
fn chat_uses_the_models_template_or_says_there_is_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = tiny();
    #[rustfmt::skip]
    fails(&["generate", "--model", &t, "--chat", "--prompt", "hi"], "--chat: the model carries no chat template");
    let m = tiny_with(dir.path(), "chat", |_| {});
    let tpl = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}\
               {% if add_generation_prompt %}assistant:{% endif %}";
    let cfg = serde_json::json!({ "chat_template": tpl });
    std::fs::write(Path::new(&m).join("tokenizer_config.json"), cfg.to_string()).expect("write");
    #[rustfmt::skip]
    let out = crate::common::ok(&["generate", "--model", &m, "--chat", "--system", "be brief", "--prompt", "hi",
                                  "--max-new-tokens", "2", "--format", "json"]);
    // "<s>system: be brief\n<s>user: hi\nassistant:": two special tokens and 36 bytes, one
    // token each in the tiny byte-level vocabulary, no BOS added.
    let report = crate::common::json(&out);
    assert_eq!(report["plan"]["input_tokens"], 38, "{report}");
    #[rustfmt::skip]
    fails(&["generate", "--model", &m, "--chat", "--prompt", "  "], "the prompt is empty");
}
