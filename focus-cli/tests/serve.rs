//! `focus serve` over real sockets on 127.0.0.1: the OpenAI endpoints, streaming, the
//! error JSON of bad requests, a full queue, and a client that leaves mid-stream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{present, tiny, tiny_chat};

/// A running server on a free port; killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(model: &str, extra: &[&str]) -> Server {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_focus"))
        .args(["serve", "--model", model, "--port", "0", "--name", "tiny"])
        .args(extra)
        .env("BURN_DEVICE", "cpu")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines.next().expect("a line").expect("UTF-8");
        if let Some(a) = line.strip_prefix("listening on http://") {
            break a.to_string();
        }
    };
    // Keep reading stderr so that the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, addr }
}

/// One HTTP/1.1 request; returns the status and the body.
fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("write");
    s.write_all(body).expect("body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text[9..12].parse().expect("status");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).expect("chunk length");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn post(addr: &str, path: &str, body: &Value) -> (u16, Value, String) {
    let (status, text) = request(addr, "POST", path, body.to_string().as_bytes());
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, v, text)
}

#[test]
fn the_openai_endpoints_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store").display().to_string();
    let s = serve(
        &tiny_chat(dir.path()),
        &[
            "--local-window",
            "64",
            "--chunk",
            "32",
            "--memory-dir",
            &store,
        ],
    );
    let a = &s.addr;
    let get = |path: &str| {
        let (status, body) = request(a, "GET", path, b"");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str::<Value>(&body).expect("json")
    };
    let health = get("/health");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["memory"]["chunks"], 0, "{health}");
    assert_eq!(health["memory"]["disk"]["entries"], 0, "{health}");
    let (status, body) = request(a, "GET", "/v1/models", b"");
    assert_eq!(status, 200);
    let models: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(models["data"][0]["id"], "tiny");

    // A long prompt (FocusLLM memory in use), greedy: the completion has the usage counts.
    let long = "the quick brown fox ".repeat(20);
    let req = json!({"model": "tiny", "messages": [{"role": "user", "content": long}],
                     "max_tokens": 5, "temperature": 0});
    let (status, v, text) = post(a, "/v1/chat/completions", &req);
    assert_eq!(status, 200, "{text}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    // "<s>user: " + 400 bytes + "\nassistant:" in the byte-level vocabulary.
    assert_eq!(v["usage"]["prompt_tokens"], 1 + 6 + 400 + 11, "{v}");
    let done = v["usage"]["completion_tokens"].as_u64().expect("count");
    assert!((1..=5).contains(&done), "{v}");
    let finish = v["choices"][0]["finish_reason"].as_str().expect("reason");
    assert!(finish == "length" || finish == "stop");

    // The same request streamed: the chunks carry the same text, then [DONE].
    let mut req = req;
    req["stream"] = json!(true);
    let (status, sse) = request(
        a,
        "POST",
        "/v1/chat/completions",
        req.to_string().as_bytes(),
    );
    assert_eq!(status, 200);
    let data: Vec<&str> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{sse}");
    let streamed: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).expect("chunk"))
        .map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        streamed,
        v["choices"][0]["message"]["content"]
            .as_str()
            .expect("text")
    );
    // The document memory after the two reads of one long prompt: every chunk of the first
    // read computed, every one of the second found in memory. The text repeats itself, so
    // the memory and the folder hold fewer distinct chunks, each computed and written once.
    let memory = get("/memory");
    let count = |v: &Value| v.as_u64().expect("count");
    let (chunks, hits) = (count(&memory["chunks"]), count(&memory["hits"]));
    assert!(chunks > 0 && hits >= chunks, "{memory}");
    assert_eq!(count(&memory["lookups"]), 2 * hits, "{memory}");
    assert!(chunks < hits, "the text repeats: {memory}");
    assert_eq!(count(&memory["disk"]["writes"]), chunks, "{memory}");
    assert_eq!(count(&memory["disk"]["entries"]), chunks, "{memory}");
    assert_eq!(get("/health")["memory"], memory);

    let req = json!({"model": "tiny", "prompt": "hello", "max_tokens": 3, "temperature": 0});
    let (status, v, text) = post(a, "/v1/completions", &req);
    assert_eq!(status, 200, "{text}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["usage"]["prompt_tokens"], 6, "BOS and five bytes");
}

/// A chat's long message is chunked from its own start: the same document after another
/// system prompt finds its chunks in the memory (chunks cut from the conversation's start
/// would all have moved).
#[test]
fn a_document_is_found_after_any_system_prompt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = serve(
        &tiny_chat(dir.path()),
        &["--local-window", "64", "--chunk", "32"],
    );
    let a = &s.addr;
    // 300 bytes that never repeat a chunk's worth of text.
    let doc: String = (100..160).map(|i| format!("w{i} ")).collect();
    assert_eq!(doc.len(), 300);
    let ask = |system: &str| {
        let req = json!({"model": "tiny", "max_tokens": 2, "temperature": 0, "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": doc},
        ]});
        let (status, v, text) = post(a, "/v1/chat/completions", &req);
        assert_eq!(status, 200, "{text}");
        v["usage"]["prompt_tokens"].as_u64().expect("count")
    };
    let memory = || {
        let (status, body) = request(a, "GET", "/memory", b"");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).expect("json")
    };
    // "<s>system: Be brief.\n" is 19 tokens; the document's turn "<s>user: " + 300 bytes +
    // "\n" 308, then "assistant:" 10: the memory is the first 337 - 64 = 273 tokens, the
    // system turn's chunk and then the document's first 254 tokens from its own start: 7
    // chunks of 32 and one of 30.
    assert_eq!(ask("Be brief."), 337);
    let first = memory();
    assert_eq!(first["hits"], 0, "{first}");
    assert_eq!(first["chunks"], 1 + 8, "{first}");
    // Another system prompt, 18 tokens longer: the document's 8 chunks are found (what
    // follows it is as long as before, so the same 254 of its tokens lie in the memory);
    // only the system turn's two chunks (37 tokens) are new.
    assert_eq!(ask("Be brief and exact, please."), 355);
    let second = memory();
    assert_eq!(second["hits"], 8, "{second}");
    assert_eq!(second["chunks"], 1 + 8 + 2, "{second}");
}

#[test]
fn bad_requests_get_openai_errors() {
    let s = serve(
        &tiny(),
        &[
            "--local-window",
            "64",
            "--max-prompt-tokens",
            "100",
            "--max-body-bytes",
            "2000",
        ],
    );
    let a = &s.addr;
    let check = |status: u16, text: &str, want: u16, needle: &str| {
        assert_eq!(status, want, "{text}");
        let v: Value = serde_json::from_str(text).expect("error JSON");
        let msg = v["error"]["message"].as_str().expect("message");
        assert!(msg.contains(needle), "{msg}");
        assert!(v["error"]["type"].is_string());
    };
    let (st, text) = request(a, "POST", "/v1/completions", b"{\"model\": \"tiny\", ");
    check(st, &text, 400, "invalid request body");
    let (st, _, text) = post(
        a,
        "/v1/completions",
        &json!({"model": "gpt-4", "prompt": "x"}),
    );
    check(st, &text, 404, "the model `gpt-4` does not exist");
    let req = json!({"model": "tiny", "prompt": "x".repeat(500)});
    let (st, _, text) = post(a, "/v1/completions", &req);
    check(st, &text, 400, "more than this server's limit of 100");
    let (st, _, text) = post(
        a,
        "/v1/completions",
        &json!({"model": "tiny", "prompt": "x", "max_tokens": -3}),
    );
    check(st, &text, 400, "max_tokens must be at least 1, not -3");
    let (st, _, text) = post(
        a,
        "/v1/chat/completions",
        &json!({"model": "tiny", "messages": [{"role": "user", "content": "x"}]}),
    );
    check(st, &text, 400, "no chat template");
    let req = json!({"model": "tiny", "prompt": "x", "focus": {"chunk": 0}});
    let (st, _, text) = post(a, "/v1/completions", &req);
    check(st, &text, 400, "chunk");
    let (st, text) = request(a, "POST", "/v1/completions", &[b' '; 3000]);
    assert_eq!(st, 413, "{text}");
    let (st, text) = request(a, "GET", "/v2/nothing", b"");
    check(st, &text, 404, "no such endpoint");
    // Still serving after all that.
    let (st, _, text) = post(
        a,
        "/v1/completions",
        &json!({"model": "tiny", "prompt": "ok", "max_tokens": 1}),
    );
    assert_eq!(st, 200, "{text}");
}

#[test]
fn a_client_that_leaves_stops_its_generation() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_focus"))
        .args([
            "serve",
            "--model",
            &tiny(),
            "--port",
            "0",
            "--name",
            "tiny",
            "--log",
            "info",
        ])
        .args(["--local-window", "32", "--chunk", "32"])
        .env("BURN_DEVICE", "cpu")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let addr = loop {
        let l = rx.recv_timeout(Duration::from_secs(60)).expect("a line");
        if let Some(a) = l.strip_prefix("listening on http://") {
            break a.to_string();
        }
    };
    let s = Server { child, addr };
    let a = &s.addr;
    // A streamed generation as long as the context allows, abandoned after its first bytes.
    let req = json!({"model": "tiny", "prompt": "x", "max_tokens": 470, "temperature": 0,
                     "stream": true});
    let body = req.to_string();
    let mut c = TcpStream::connect(a).expect("connect");
    write!(
        c,
        "POST /v1/completions HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut first = [0u8; 64];
    let n = c.read(&mut first).expect("first bytes");
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    drop(c);
    let stopped = loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) if l.contains("the client left after") => break l,
            Ok(_) => continue,
            Err(e) => panic!("no cancellation logged: {e}"),
        }
    };
    let n: usize = stopped
        .split("after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a token count");
    assert!(n < 470, "{stopped}");
    // And the model serves the next request.
    let (st, _, text) = post(
        a,
        "/v1/completions",
        &json!({"model": "tiny", "prompt": "y", "max_tokens": 2}),
    );
    assert_eq!(st, 200, "{text}");
}

/// The Python interpreter of the client tests' environment (`scripts/python-env.sh`), or
/// `None` (the test is skipped; see [`present`]).
fn client_python() -> Option<std::path::PathBuf> {
    let env = std::env::var_os("FOCUS_PYTHON_ENV")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/focus-python")))?;
    present(env.join("bin/python"), "scripts/python-env.sh")
}

/// The official `openai` Python package (pinned in tests/python/requirements.txt) against
/// the server: models, chat (whole and streamed), text completion, an unknown model.
#[test]
fn the_openai_python_client_gets_answers() {
    let Some(python) = client_python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let s = serve(
        &tiny_chat(dir.path()),
        &["--local-window", "64", "--chunk", "32"],
    );
    let out = std::process::Command::new(python)
        .arg(crate::common::root().join("tests/python/openai_client.py"))
        .args([&format!("http://{}/v1", s.addr), "tiny"])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["version"], "3.51.0");
    assert_eq!(v["models"], json!(["tiny"]));
    for call in ["chat", "chat_stream", "completion"] {
        let finish = v[call]["finish_reason"].as_str().unwrap_or_default();
        assert!(finish == "length" || finish == "stop", "{call}: {v}");
    }
    // Greedy both times: the streamed pieces make up the whole answer.
    assert_eq!(v["chat_stream"]["text"], v["chat"]["text"], "{v}");
    assert!(
        v["chat"]["completion_tokens"]
            .as_u64()
            .is_some_and(|n| (1..=6).contains(&n))
    );
    assert_eq!(v["unknown_model"]["status"], 404, "{v}");
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

/// 8 clients at once, 20 requests each (long prompts through the memory, short ones,
/// streamed and not): every answer complete, none refused, and the server's memory after
/// the load no larger than after the first round plus a bound.
#[test]
fn eight_clients_at_once_get_complete_answers() {
    let s = serve(
        &tiny(),
        &["--local-window", "48", "--chunk", "16", "--queue", "8"],
    );
    let addr = s.addr.clone();
    let round = |client: usize, i: usize| {
        let prompt = if (client + i).is_multiple_of(2) {
            format!("client {client} asks {i}: {}", "lorem ipsum ".repeat(12))
        } else {
            format!("short {client} {i}")
        };
        let stream = i.is_multiple_of(3);
        let req = json!({"model": "tiny", "prompt": prompt, "max_tokens": 4,
                         "temperature": 0, "stream": stream});
        let (status, body) = request(&addr, "POST", "/v1/completions", req.to_string().as_bytes());
        assert_eq!(status, 200, "client {client} request {i}: {body}");
        if stream {
            assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
        } else {
            let v: Value = serde_json::from_str(&body).expect("json");
            let finish = v["choices"][0]["finish_reason"]
                .as_str()
                .unwrap_or_default();
            assert!(finish == "length" || finish == "stop", "{v}");
        }
    };
    let load = |requests: usize| {
        std::thread::scope(|scope| {
            for client in 0..8 {
                scope.spawn(move || (0..requests).for_each(|i| round(client, i)));
            }
        })
    };
    load(1);
    let warm = rss_mib(s.child.id());
    load(20);
    let after = rss_mib(s.child.id());
    // Observed: 30.1 MiB after the first 8 requests, 31.4 MiB after 160 more.
    assert!(
        after < warm + 64.0,
        "resident memory grew from {warm:.0} to {after:.0} MiB"
    );
}
