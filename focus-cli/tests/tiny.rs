//! End-to-end tests of the `focus` binary: every subcommand on the tiny fixture model,
//! and bad inputs (one line on stderr, exit code 2, no output file).

use crate::common::{fails, fixture, focus, json, ok, tiny};
use serde_json::Value;

/// `generate --format json` on the tiny model with a prompt long enough for 6 memory chunks
/// (`W = 32`, `S = 16`), then `extra`.
fn long_generate(extra: &[&str]) -> Vec<String> {
    let prompt = "a long enough prompt for memory chunks ".repeat(3);
    let args = [
        "generate",
        "--model",
        &tiny(),
        "--prompt",
        &prompt,
        "--local-window",
        "32",
        "--chunk",
        "16",
        "--max-new-tokens",
        "5",
        "--format",
        "json",
    ];
    args.iter().chain(extra).map(|a| a.to_string()).collect()
}

#[test]
fn generate_json_reports_tokens_logits_and_plan() {
    let args = long_generate(&["-q"]);
    let v = json(&ok(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    let ids = v["generated_ids"].as_array().expect("ids");
    assert!(!ids.is_empty() && ids.len() <= 5);
    assert_eq!(v["top_logits"].as_array().expect("top").len(), 20);
    // BOS + 117 bytes -> 118 ids; W = 32 leaves 86 tokens = 6 chunks of 16 (the last
    // one short); the dynamic prompt is BOS + min(512, S, W) = 17 tokens.
    assert_eq!(v["plan"]["input_tokens"], 118);
    assert_eq!(v["plan"]["chunks"], 6);
    assert_eq!(v["plan"]["local_tokens"], 32);
    assert_eq!(v["plan"]["prompt_tokens"], 17);
}

/// A copy of the tiny model's candidate projections whose header records `focus.prompt_cap`
/// as `cap` (a JSON string, as `focus train` writes it).
fn candidates_with_cap(dir: &std::path::Path, cap: &str) -> String {
    let bytes = std::fs::read(fixture("tiny-focus-candidates.safetensors")).expect("fixture");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header");
    header["__metadata__"]["focus.prompt_cap"] = Value::String(cap.into());
    let header = serde_json::to_vec(&header).expect("JSON");
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&bytes[8 + n..]);
    let path = dir.join(format!("cap-{cap}.safetensors"));
    std::fs::write(&path, out).expect("write");
    path.display().to_string()
}

/// The prompt cap recorded by the candidate weights is the default; `--prompt-cap` overrides
/// it; a file without one keeps the paper's 512; a recorded value that is not a number is a
/// one-line error.
#[test]
fn candidate_weights_give_their_prompt_cap() {
    let dir = tempfile::tempdir().expect("tmp");
    let prompt_tokens = |extra: &[&str]| {
        let args = long_generate(&[&["-q"], extra].concat());
        json(&ok(&args.iter().map(String::as_str).collect::<Vec<_>>()))["plan"]["prompt_tokens"]
            .clone()
    };
    let eight = candidates_with_cap(dir.path(), "8");
    // BOS + min(cap, S = 16, W = 32).
    assert_eq!(prompt_tokens(&["--focus-weights", &eight]), 9);
    assert_eq!(
        prompt_tokens(&["--focus-weights", &eight, "--prompt-cap", "4"]),
        5
    );
    let plain = fixture("tiny-focus-candidates.safetensors");
    assert_eq!(
        prompt_tokens(&["--focus-weights", plain.to_str().expect("path")]),
        17
    );
    let bad = candidates_with_cap(dir.path(), "eight");
    let args = long_generate(&["--focus-weights", &bad]);
    fails(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "focus.prompt_cap",
    );
}

/// `--memory-dir`: a second process reads every chunk from the disk store and gives the
/// same logits and tokens, bit for bit; a damaged entry is named on stderr, computed again
/// and changes nothing.
#[test]
fn a_disk_store_answers_a_later_process_exactly() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let run = || {
        let out = focus()
            .args(long_generate(&["--memory-dir"]))
            .arg(&store)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = json(&String::from_utf8(out.stdout).expect("UTF-8"));
        (v, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (first, _) = run();
    let counts = |v: &serde_json::Value| {
        let s = &v["store"];
        [&s["hits"], &s["misses"], &s["damaged"], &s["writes"]].map(|x| x.as_u64().expect("count"))
    };
    // 6 chunks of 16 (the last short): all computed and written.
    assert_eq!(counts(&first), [0, 6, 0, 6], "{first}");
    let (second, _) = run();
    assert_eq!(counts(&second), [6, 0, 0, 0], "{second}");
    let same = |v: &serde_json::Value| {
        v["top_logits"] == first["top_logits"] && v["generated_ids"] == first["generated_ids"]
    };
    assert!(same(&second), "{second} against {first}");
    // Flip one byte of one entry's payload: noticed, recomputed, rewritten.
    let entry = std::fs::read_dir(&store)
        .expect("store")
        .map(|e| e.expect("entry").path())
        .next()
        .expect("an entry");
    let mut bytes = std::fs::read(&entry).expect("read");
    *bytes.last_mut().expect("bytes") ^= 1;
    std::fs::write(&entry, &bytes).expect("write");
    let (third, err) = run();
    assert_eq!(counts(&third), [5, 0, 1, 1], "{third}");
    assert!(
        err.contains("damaged chunk entry") && err.contains("checksum"),
        "{err}"
    );
    assert!(same(&third), "{third} against {first}");
    // Chunk caches kept in bf16 are other entries (the fingerprint names the type): the
    // first such run finds none of the f32 ones, a later one finds all of its own and
    // answers the same, bit for bit.
    let compact = || {
        let out = focus()
            .args(long_generate(&["--memory-dir"]))
            .arg(&store)
            .args(["--chunk-cache-dtype", "bf16"])
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json(&String::from_utf8(out.stdout).expect("UTF-8"))
    };
    let (fourth, fifth) = (compact(), compact());
    assert_eq!(counts(&fourth), [0, 6, 0, 6], "{fourth}");
    assert_eq!(counts(&fifth), [6, 0, 0, 0], "{fifth}");
    assert_eq!(fourth["top_logits"], fifth["top_logits"]);
    assert_eq!(fourth["generated_ids"], fifth["generated_ids"]);
}

/// `memory add` reads a document's full chunks into the store ahead of a question; a
/// prompt that begins with the document then finds them there and answers as without the
/// store; `memory list` shows the entries and `memory clear` removes them.
#[test]
fn a_document_read_ahead_serves_a_later_question() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let store = store.to_str().expect("UTF-8 path");
    // The first 80 characters of `long_generate`'s prompt: BOS and 80 bytes, five full
    // chunks of 16 (the 81st token waits for the rest of the prompt).
    let doc = "a long enough prompt for memory chunks ".repeat(3)[..80].to_string();
    let add = || {
        let args = ["memory", "add", "--model", &tiny(), "--prompt", &doc];
        let rest = [
            "--chunk",
            "16",
            "--local-window",
            "32",
            "--memory-dir",
            store,
        ];
        json(&ok(&[&args[..], &rest, &["--format", "json"]].concat()))
    };
    let added = add();
    assert_eq!(
        [
            &added["tokens"],
            &added["chunks"],
            &added["found"],
            &added["written"]
        ],
        [81, 5, 0, 5],
        "{added}"
    );
    assert_eq!(added["store"]["entries"], 5, "{added}");
    let again = add();
    assert_eq!([&again["found"], &again["written"]], [5, 0], "{again}");
    // The question: the same five chunks found, the sixth (short) computed; the answer as
    // without a store.
    let with = |extra: &[&str]| {
        let args = long_generate(extra);
        json(&ok(&args.iter().map(String::as_str).collect::<Vec<_>>()))
    };
    let asked = with(&["-q", "--memory-dir", store]);
    let s = &asked["store"];
    assert_eq!(
        [&s["hits"], &s["misses"], &s["writes"]],
        [5, 1, 1],
        "{asked}"
    );
    let plain = with(&["-q"]);
    assert_eq!(asked["top_logits"], plain["top_logits"]);
    assert_eq!(asked["generated_ids"], plain["generated_ids"]);
    let list = |fmt: &str| ok(&["memory", "list", "--memory-dir", store, "--format", fmt]);
    let listed = json(&list("json"));
    let tokens: Vec<u64> = listed["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["tokens"].as_u64().expect("tokens"))
        .collect();
    assert_eq!(tokens.len(), 6, "{listed}");
    assert_eq!(tokens.iter().filter(|&&t| t == 16).count(), 5, "{listed}");
    assert_eq!(listed["store"]["entries"], 6);
    assert!(list("text").contains(": 6 entries,"));
    let cleared = json(&ok(&[
        "memory",
        "clear",
        "--memory-dir",
        store,
        "--format",
        "json",
    ]));
    assert_eq!(cleared["removed"], 6, "{cleared}");
    assert_eq!(json(&list("json"))["store"]["entries"], 0);
    // A folder that does not exist is named, not listed as empty.
    let missing = dir.path().join("nothing").display().to_string();
    fails(
        &["memory", "list", "--memory-dir", &missing],
        "no such folder",
    );
    fails(
        &["memory", "add", "--model", &tiny(), "--prompt", "hi"],
        "needs --memory-dir",
    );
}

#[test]
fn generate_streams_text_and_no_focus_runs() {
    let out = ok(&[
        "-q",
        "generate",
        "--model",
        &tiny(),
        "--prompt",
        "hello",
        "--max-new-tokens",
        "4",
    ]);
    assert!(out.ends_with('\n'));
    let v = json(&ok(&[
        "-q",
        "generate",
        "--model",
        &tiny(),
        "--prompt",
        "hello",
        "--no-focus",
        "--max-new-tokens",
        "3",
        "--format",
        "json",
    ]));
    assert_eq!(v["plan"]["focus"], false);
}

#[test]
fn ppl_reports_every_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("doc.txt");
    std::fs::write(
        &text,
        "The quick brown fox jumps over the lazy dog. ".repeat(10),
    )
    .expect("write");
    let out_json = dir.path().join("ppl.json");
    let v = json(&ok(&[
        "-q",
        "ppl",
        text.to_str().expect("path"),
        "--model",
        &tiny(),
        "--local-window",
        "64",
        "--chunk",
        "32",
        "--length",
        "300",
        "--score",
        "8",
        "--stride",
        "100",
        "--windows",
        "2",
        "--format",
        "json",
        "--json",
        out_json.to_str().expect("path"),
    ]));
    let results = v["entries"][0]["results"].as_array().expect("results");
    let modes: Vec<&str> = results
        .iter()
        .map(|r| r["mode"].as_str().expect("mode"))
        .collect();
    assert_eq!(modes, ["focus", "truncated", "full"]);
    for r in results {
        let ppl = r["ppl"].as_f64().expect("ppl");
        // A random 260-token model: perplexity is finite and near the vocabulary size.
        assert!(ppl.is_finite() && ppl > 1.0, "{r}");
        assert_eq!(r["tokens"], 16);
    }
    assert_eq!(
        json(&std::fs::read_to_string(&out_json).expect("json file")),
        v
    );
    // FocusLLM against the window, token by token: recomputed here from the scored tokens.
    let nll = |r: &serde_json::Value| -> Vec<f64> {
        r["windows"]
            .as_array()
            .expect("windows")
            .iter()
            .flat_map(|w| w["nll"].as_array().expect("nll").clone())
            .map(|x| x.as_f64().expect("nll"))
            .collect()
    };
    let d: Vec<f64> = nll(&results[0])
        .iter()
        .zip(nll(&results[1]))
        .map(|(a, b)| a - b)
        .collect();
    let n = d.len() as f64;
    let mean = d.iter().sum::<f64>() / n;
    let se = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt();
    let diff = &v["entries"][0]["differences"][0];
    assert_eq!(
        (diff["mode"].as_str(), diff["against"].as_str()),
        (Some("focus"), Some("truncated"))
    );
    assert_eq!(diff["tokens"], 16);
    // The report sums the f32 scores in f64; here they are read back from the JSON's
    // shortest decimal forms, which differ from the f32 values by up to half an f32 unit
    // (about 3e-8 relative). Observed: 4.4e-8 for the mean, 1.4e-8 for the standard error.
    let (e_mean, e_se) = (
        (diff["nats_per_token"].as_f64().expect("mean") - mean).abs(),
        (diff["standard_error"].as_f64().expect("se") - se).abs(),
    );
    eprintln!("ppl difference: mean off by {e_mean:e}, standard error by {e_se:e}");
    assert!(e_mean < 1e-6 && e_se < 1e-6, "{diff}: {e_mean:e}, {e_se:e}");
    assert!(se > 0.0);
    let llama = json(&ok(&[
        "-q",
        "ppl",
        text.to_str().expect("path"),
        "--model",
        &tiny(),
        "--protocol",
        "llama-cpp",
        "--ctx",
        "128",
        "--modes",
        "full",
        "--format",
        "json",
    ]));
    // A window of exactly the model's 512 positions fits full attention (BOS included,
    // the last target is never fed).
    let long = dir.path().join("long.txt");
    std::fs::write(&long, "abcdefghij".repeat(60)).expect("write");
    let v = json(&ok(&[
        "-q",
        "ppl",
        long.to_str().expect("path"),
        "--model",
        &tiny(),
        "--length",
        "512",
        "--score",
        "8",
        "--windows",
        "1",
        "--modes",
        "full",
        "--format",
        "json",
    ]));
    assert_eq!(v["entries"][0]["results"][0]["tokens"], 8);
    // 450 bytes -> 3 chunks of 128, each scored on 63 tokens.
    assert_eq!(llama["entries"][0]["results"][0]["tokens"], 189);
}

/// `passkey --chat`: each prompt the user's turn of a chat after a system turn, the memory
/// cut message by message or uniformly; the same keys either way, and no chat for a model
/// without a template.
#[test]
fn passkey_runs_as_a_chat_cut_either_way() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = crate::common::tiny_chat(dir.path());
    let run = |chunking: &str| {
        json(&ok(&[
            "-q",
            "passkey",
            "--model",
            &model,
            "--local-window",
            "128",
            "--chunk",
            "64",
            "--lengths",
            "480",
            "--depths",
            "0.5",
            "--trials",
            "2",
            "--modes",
            "focus",
            "--chat",
            "--system",
            "Be brief.",
            "--chunking",
            chunking,
            "--format",
            "json",
        ]))
    };
    let keys = |v: &Value| -> Vec<Value> {
        v["trials"]
            .as_array()
            .expect("trials")
            .iter()
            .map(|t| t["key"].clone())
            .collect()
    };
    let messages = run("messages");
    let uniform = run("uniform");
    assert_eq!(messages["form"], "chat, messages");
    assert_eq!(uniform["form"], "chat, uniform");
    assert_eq!(keys(&messages), keys(&uniform));
    for t in messages["trials"].as_array().expect("trials") {
        assert!(t["prompt_tokens"].as_u64().expect("n") <= 480, "{t}");
        assert_eq!(t["form"], "chat, messages");
    }
    fails(
        &["passkey", "--model", &tiny(), "--chat", "--lengths", "480"],
        "carries no chat template",
    );
}

#[test]
fn passkey_and_niah_write_table_json_and_heatmap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let png = dir.path().join("pk.png");
    let js = dir.path().join("pk.json");
    let model = tiny();
    // The grid both splits are run on (W = 128, S = 64, depths 0 and 1, two trials each).
    let grid = |rest: &[&str]| -> String {
        let mut args = vec![
            "-q",
            "passkey",
            "--model",
            &model,
            "--local-window",
            "128",
            "--chunk",
            "64",
            "--depths",
            "0,1",
            "--trials",
            "2",
        ];
        args.extend_from_slice(rest);
        ok(&args)
    };
    let table = grid(&[
        "--lengths",
        "400,480",
        "--heatmap",
        png.to_str().expect("path"),
        "--json",
        js.to_str().expect("path"),
    ]);
    assert!(table.contains("| focus | 400 |"), "{table}");
    assert!(table.contains("| full | 480 |"), "{table}");
    let png_bytes = std::fs::read(&png).expect("heatmap");
    assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
    // Outputs get the permissions of any new file (a bare temporary file is owner-only).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"").expect("w");
        assert_eq!(mode(&js) & 0o777, mode(&plain) & 0o777, "json");
        assert_eq!(mode(&png) & 0o777, mode(&plain) & 0o777, "png");
    }
    let v = json(&std::fs::read_to_string(&js).expect("json"));
    // 2 lengths x 2 depths x 2 trials x 3 modes.
    let trials = v["trials"].as_array().expect("trials");
    assert_eq!(trials.len(), 24);
    let mut keys = std::collections::HashMap::new();
    for t in trials {
        assert!(t["prompt_tokens"].as_u64().expect("n") <= t["length"].as_u64().expect("l"));
        assert_eq!(t["split"], "validation");
        assert!(t["exact"].is_boolean() && t["lenient"].is_boolean(), "{t}");
        // An exact answer is a lenient one.
        assert!(t["exact"] == false || t["lenient"] == true, "{t}");
        // Trial t of every length and mode hides the same key; depths have their own.
        let index = t["index"].as_u64().expect("index");
        assert_eq!(index / 2, u64::from(t["depth"] == 1.0), "{t}");
        let key = t["key"].as_u64().expect("key");
        assert_eq!(*keys.entry(index).or_insert(key), key, "{t}");
    }
    assert_eq!(keys.len(), 4);
    // Cells per (mode, length, depth) and per (mode, length), with Wilson bounds.
    let cells = v["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 3 * 2 * 3);
    for c in cells {
        let e = &c["exact"];
        let (lo, r, hi) = (
            e["low95"].as_f64(),
            e["rate"].as_f64(),
            e["high95"].as_f64(),
        );
        assert!(lo <= r && r <= hi, "{c}");
    }
    // The test split draws other keys.
    let test = json(&grid(&[
        "--lengths",
        "400",
        "--modes",
        "truncated",
        "--split",
        "test",
        "--format",
        "json",
    ]));
    for t in test["trials"].as_array().expect("trials") {
        assert_eq!(t["split"], "test");
        assert!(
            !keys.values().any(|k| *k == t["key"].as_u64().expect("key")),
            "{t}"
        );
    }
    let hay = dir.path().join("hay");
    std::fs::create_dir(&hay).expect("dir");
    std::fs::write(
        hay.join("a.txt"),
        "Essays are long. They go on and on. ".repeat(20),
    )
    .expect("w");
    let v = json(&ok(&[
        "-q",
        "niah",
        "--model",
        &tiny(),
        "--haystack",
        hay.to_str().expect("path"),
        "--local-window",
        "128",
        "--chunk",
        "64",
        "--lengths",
        "300",
        "--depths",
        "0.5",
        "--modes",
        "focus",
        "--format",
        "json",
    ]));
    assert_eq!(v["task"], "niah");
    assert_eq!(v["trials"].as_array().expect("trials").len(), 1);
    // A haystack of one's own is measured, and the report says it is not held out.
    assert_eq!(v["haystack_held_out"], serde_json::Value::Null);
}

#[test]
fn inspect_and_bench_run_on_the_tiny_model() {
    let out = ok(&["inspect", &tiny()]);
    assert!(out.contains("llama"), "{out}");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.json");
    let out = ok(&[
        "-q",
        "bench",
        "--model",
        &tiny(),
        "--prefill",
        "96",
        "--decode",
        "96",
        "--decode-tokens",
        "2",
        "--local-window",
        "32",
        "--chunk",
        "16",
        "--roofline",
        "1,1",
        "--json",
        path.to_str().expect("path"),
    ]);
    assert!(out.contains("focus") && out.contains("full"), "{out}");
    // Every prefill and plain decoding row has its work counted and its roofline share:
    // the longer of work / ceiling for operations (1 TFLOP/s) and bytes (1 GB/s), over the
    // measured time.
    let v = json(&std::fs::read_to_string(&path).expect("bench JSON"));
    let mut shares = 0;
    for r in v["rows"].as_array().expect("rows") {
        let Some(share) = r["roofline_share"].as_f64() else {
            assert!(r["mode"] == "focus" && r["phase"] == "decode", "{r}");
            continue;
        };
        let (gflop, gbyte) = (r["gflop"].as_f64().unwrap(), r["gbyte"].as_f64().unwrap());
        assert!(gflop > 0.0 && gbyte > 0.0, "{r}");
        let want = (gflop / 1e3).max(gbyte) / r["seconds"].as_f64().unwrap();
        assert!((share - want).abs() <= 1e-9 * want, "{r}");
        shares += 1;
    }
    assert_eq!(shares, 3, "full prefill and decode, FocusLLM prefill");
}

/// `bench --memory --memory-dir` reads the second question as a restarted process would:
/// the first fills the emptied folder, the second finds its chunks there.
#[test]
fn bench_measures_the_document_memory_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).expect("store");
    std::fs::write(store.join("notes.txt"), b"not an entry").expect("file");
    let path = dir.path().join("bench.json");
    #[rustfmt::skip]
    ok(&[
        "-q", "bench", "--model", &tiny(), "--prefill", "160", "--decode", "none",
        "--modes", "focus", "--local-window", "32", "--chunk", "16", "--memory",
        "--memory-dir", &store.display().to_string(), "--json", &path.display().to_string(),
    ]);
    let v = json(&std::fs::read_to_string(&path).expect("json written"));
    let what: Vec<&str> = v["ratios"]
        .as_array()
        .expect("ratios")
        .iter()
        .filter_map(|r| r["what"].as_str())
        .collect();
    assert_eq!(
        what,
        ["document memory: second question after a restart vs first"],
        "{v}"
    );
    // 160 tokens, W = 32: 8 chunks of 16 written by the first question; another file is
    // left alone.
    let entries = std::fs::read_dir(&store)
        .expect("store")
        .filter(|e| {
            e.as_ref()
                .expect("entry")
                .path()
                .extension()
                .is_some_and(|x| x == "kv")
        })
        .count();
    assert!(entries >= 8, "{entries} entries");
    assert!(store.join("notes.txt").exists());
}

/// `--batches` measures FocusLLM chunk by chunk and batched in one process and reports the
/// ratio; `--repeat` keeps the first run apart.
#[test]
fn bench_compares_batch_sizes_and_repeats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.json");
    let p = path.display().to_string();
    #[rustfmt::skip]
    ok(&[
        "-q", "bench", "--model", &tiny(), "--prefill", "160", "--decode", "none",
        "--local-window", "32", "--chunk", "16", "--batches", "1,4", "--repeat", "2",
        "--json", &p,
    ]);
    let v = json(&std::fs::read_to_string(&path).expect("json written"));
    let rows = v["rows"].as_array().expect("rows");
    let batches: Vec<_> = rows.iter().map(|r| r["batch"].clone()).collect();
    assert_eq!(batches, [Value::Null, 1.into(), 4.into()], "{v}");
    assert!(
        rows.iter()
            .all(|r| r["runs"] == 2 && r["first_seconds"].as_f64() > Some(0.0))
    );
    let ratios = v["ratios"].as_array().expect("ratios");
    let what: Vec<&str> = ratios.iter().filter_map(|r| r["what"].as_str()).collect();
    assert_eq!(
        what,
        [
            "FocusLLM batch 4 vs chunk by chunk",
            "FocusLLM vs full attention"
        ]
    );
    assert!(ratios.iter().all(|r| r["speedup"].as_f64() > Some(0.0)));
}

#[test]
fn bad_inputs_fail_with_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |name: &str| dir.path().join(name).display().to_string();
    fails(
        &["generate", "--model", &d("nope.gguf"), "--prompt", "x"],
        "not found",
    );
    // A missing candidate-weights file: named once, its I/O error once.
    fails(
        &[
            "generate",
            "--model",
            &tiny(),
            "--focus-weights",
            &d("none.safetensors"),
            "--prompt",
            "x",
        ],
        "none.safetensors: No such file or directory (os error 2)",
    );
    std::fs::create_dir(dir.path().join("empty")).expect("dir");
    fails(
        &["generate", "--model", &d("empty"), "--prompt", "x"],
        "config.json",
    );
    std::fs::write(d("bad.gguf"), b"GGUF\x03\x00\x00\x00\xff\xff\xff\xff").expect("w");
    fails(
        &["generate", "--model", &d("bad.gguf"), "--prompt", "x"],
        "bad.gguf",
    );
    // A truncated safetensors file and an unknown architecture, in copies of the fixture.
    for (name, edit) in [("trunc", 0), ("arch", 1)] {
        let m = dir.path().join(name);
        std::fs::create_dir(&m).expect("dir");
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            std::fs::copy(fixture("tiny-llama").join(f), m.join(f)).expect("copy");
        }
        if edit == 0 {
            let bytes = std::fs::read(m.join("model.safetensors")).expect("read");
            std::fs::write(m.join("model.safetensors"), &bytes[..bytes.len() / 2]).expect("w");
        } else {
            let cfg = std::fs::read_to_string(m.join("config.json")).expect("read");
            let cfg = cfg
                .replace("\"llama\"", "\"mamba\"")
                .replace("LlamaForCausalLM", "MambaForCausalLM");
            std::fs::write(m.join("config.json"), cfg).expect("w");
        }
    }
    fails(
        &["generate", "--model", &d("trunc"), "--prompt", "x"],
        "safetensors",
    );
    fails(
        &["generate", "--model", &d("arch"), "--prompt", "x"],
        "mamba",
    );
    std::fs::write(d("latin1.txt"), b"caf\xe9").expect("w");
    fails(
        &[
            "generate",
            "--model",
            &tiny(),
            "--prompt-file",
            &d("latin1.txt"),
        ],
        "UTF-8",
    );
    fails(&["generate", "--model", &tiny(), "--prompt", ""], "empty");
    std::fs::write(d("ids.json"), b"[1, 2, 999]").expect("w");
    fails(
        &[
            "generate",
            "--model",
            &tiny(),
            "--prompt-ids",
            &d("ids.json"),
        ],
        "vocabulary",
    );
    fails(
        &[
            "generate",
            "--model",
            &tiny(),
            "--prompt",
            "x",
            "--chunk",
            "0",
        ],
        "chunk",
    );
    fails(
        &[
            "generate",
            "--model",
            &tiny(),
            "--prompt",
            "x",
            "--local-window",
            "4096",
        ],
        "context",
    );
    let long = "y".repeat(600);
    fails(
        &[
            "generate",
            "--model",
            &tiny(),
            "--prompt",
            &long,
            "--no-focus",
        ],
        "context",
    );
    fails(
        &[
            "generate",
            "--model",
            &tiny(),
            "--prompt",
            "x",
            "--dtype",
            "f8",
        ],
        "dtype",
    );
    fails(
        &[
            "generate",
            "--model",
            &tiny(),
            "--prompt",
            "x",
            "--device",
            "tpu",
        ],
        "tpu",
    );
    // The command line's own usage errors, on one line, exit with 2 too.
    fails(
        &["generate", "--no-such-flag"],
        "unexpected argument '--no-such-flag'",
    );
    // No partial output files when a run fails.
    fails(
        &[
            "passkey",
            "--model",
            &d("nope"),
            "--json",
            &d("out.json"),
            "--heatmap",
            &d("out.png"),
        ],
        "not found",
    );
    fails(
        &[
            "ppl",
            &d("missing.txt"),
            "--model",
            &tiny(),
            "--json",
            &d("p.json"),
        ],
        "missing.txt",
    );
    fails(
        &[
            "passkey",
            "--model",
            &tiny(),
            "--lengths",
            "10",
            "--json",
            &d("p2.json"),
        ],
        "too short",
    );
    #[rustfmt::skip]
    fails(
        &["bench", "--model", &tiny(), "--batches", "0", "--json", &d("b.json")],
        "at least one chunk",
    );
    #[rustfmt::skip]
    fails(&["bench", "--model", &tiny(), "--repeat", "0"], "repeat");
    #[rustfmt::skip]
    fails(&["bench", "--model", &tiny(), "--roofline", "500"], "\"500\" is not TFLOPS,GB/s");
    #[rustfmt::skip]
    fails(&["bench", "--model", &tiny(), "--memory-dir", &d("store")], "add --memory");
    #[rustfmt::skip]
    fails(
        &["train", "--model", &tiny(), "--dtype", "f16", "--data", &tiny(), "--out", &d("run")],
        "f16 cannot train",
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && n != "ids.json" || n.ends_with(".png"))
        .collect();
    assert!(left.is_empty(), "partial outputs left behind: {left:?}");
}

/// `--journal`: a retrieval test stopped partway goes on where it stopped (the trials the
/// journal holds are taken, not run again; a line cut short by the kill is run again), and a
/// journal written with other settings is refused.
#[test]
fn a_retrieval_test_goes_on_from_its_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("trials.jsonl");
    let run = |window: &str, out: &str| {
        let out = dir.path().join(out);
        let args = [
            "-q",
            "passkey",
            "--model",
            &tiny(),
            "--lengths",
            "300",
            "--depths",
            "0.2,0.8",
            "--trials",
            "2",
            "--local-window",
            window,
            "--chunk",
            "64",
            "--modes",
            "focus,truncated",
            "--journal",
            journal.to_str().expect("path"),
            "--json",
            out.to_str().expect("path"),
        ];
        ok(&args);
        json(&std::fs::read_to_string(out).expect("report"))["trials"].clone()
    };
    let whole = run("64", "a.json");
    let lines = |p: &std::path::Path| std::fs::read_to_string(p).expect("journal");
    let text = lines(&journal);
    assert_eq!(
        text.lines().count(),
        1 + 8,
        "a header and 2 modes x 2 depths x 2 trials"
    );
    // Stopped during the fourth trial's line: the header, three trials and part of one.
    let kept: Vec<&str> = text.split_inclusive('\n').take(4).collect();
    let torn = &text.split_inclusive('\n').nth(4).expect("fourth trial")[..20];
    std::fs::write(&journal, kept.concat() + torn).expect("write");
    let resumed = run("64", "b.json");
    let (a, b) = (
        whole.as_array().expect("trials"),
        resumed.as_array().expect("trials"),
    );
    assert_eq!(a.len(), 8);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        for field in [
            "mode", "depth", "index", "key", "output", "exact", "lenient",
        ] {
            assert_eq!(x[field], y[field], "trial {i}: {field}");
        }
        if i < 3 {
            // Taken from the journal: the first run's own timing.
            assert_eq!(x["seconds"], y["seconds"], "trial {i} ran again");
        }
    }
    let text = lines(&journal);
    assert_eq!(text.lines().count(), 1 + 8);
    assert!(
        text.lines().skip(1).all(|l| json(l)["key"].is_u64()),
        "{text}"
    );
    // Another window is another test: its trials are not this journal's.
    fails(
        &[
            "passkey",
            "--model",
            &tiny(),
            "--lengths",
            "300",
            "--local-window",
            "128",
            "--chunk",
            "64",
            "--journal",
            journal.to_str().expect("path"),
        ],
        "written by a run with other settings",
    );
}
