//! Chat templates against Jinja2 (`tests/scripts/chat_reference.py` renders the fixture with
//! transformers' settings): SmolLM2's own template and a Llama-3-style one that exercises
//! whitespace control, Python string methods, namespaces and `raise_exception`.

use focus_model::gguf::GgufFile;
use focus_model::{ChatTemplate, Message};
use focus_tests::{fixture, smollm2_path};
use serde_json::Value;

fn reference() -> Value {
    let text = std::fs::read_to_string(fixture("chat-templates.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn template(t: &Value) -> ChatTemplate {
    ChatTemplate::new(
        t["template"].as_str().unwrap(),
        t["bos_token"].as_str().unwrap(),
        t["eos_token"].as_str().unwrap(),
    )
}

#[test]
fn templates_render_as_jinja2_does() {
    let r = reference();
    let mut cases = 0;
    for t in r["templates"].as_array().unwrap() {
        let tpl = template(t);
        for c in t["cases"].as_array().unwrap() {
            let messages: Vec<Message> = serde_json::from_value(c["messages"].clone()).unwrap();
            let open = c["add_generation_prompt"].as_bool().unwrap();
            let got = tpl.render(&messages, open);
            match (c.get("expected"), c.get("error")) {
                (Some(e), _) => assert_eq!(got.unwrap(), e.as_str().unwrap(), "{}", t["name"]),
                (None, Some(e)) => {
                    let msg = got.unwrap_err().to_string();
                    assert!(msg.contains(e.as_str().unwrap()), "{}: {msg}", t["name"]);
                }
                _ => panic!("a case holds an expected text or an error"),
            }
            cases += 1;
        }
    }
    assert_eq!(cases, 10);
}

#[test]
fn smollm2_carries_the_reference_template() {
    let Some(path) = smollm2_path() else { return };
    let g = GgufFile::open(&path).unwrap();
    let t = ChatTemplate::from_gguf(&g)
        .unwrap()
        .expect("a chat template");
    let r = reference();
    let want = template(&r["templates"][0]);
    assert_eq!(t, want);
}

#[test]
fn hf_directories_name_their_template_in_tokenizer_config() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(ChatTemplate::from_hf_dir(dir.path()).unwrap(), None);
    let cfg = serde_json::json!({
        "bos_token": {"content": "<s>", "special": true},
        "eos_token": "</s>",
        "chat_template": [
            {"name": "tool_use", "template": "tools"},
            {"name": "default", "template": "{{ bos_token }}{{ messages[0]['content'] }}{{ eos_token }}"},
        ],
    });
    std::fs::write(dir.path().join("tokenizer_config.json"), cfg.to_string()).unwrap();
    let t = ChatTemplate::from_hf_dir(dir.path()).unwrap().unwrap();
    assert_eq!(
        t.render(&[Message::new("user", "hi")], false).unwrap(),
        "<s>hi</s>"
    );
}

/// A conversation's message starts on SmolLM2's template: each at the `<|im_start|>` of its
/// turn, the ids those of `prompt_ids`, and a document's turn the same tokens whatever
/// system prompt came before it (which is what lets its chunks be reused).
#[test]
fn smollm2_messages_start_at_their_turns() {
    let Some(path) = smollm2_path() else { return };
    let g = GgufFile::open(&path).unwrap();
    let t = ChatTemplate::from_gguf(&g).unwrap().unwrap();
    let tok = focus_model::Tokenizer::from_gguf(&g).unwrap();
    let doc = "Report. The pass key is 4821. ".repeat(20);
    let turns = |system: &str| {
        vec![
            Message::new("system", system),
            Message::new("user", doc.as_str()),
            Message::new("assistant", "Read it."),
            Message::new("user", "What is the pass key?"),
        ]
    };
    let open = tok.encode("<|im_start|>", false).unwrap();
    assert_eq!(open.len(), 1, "a special token");
    let mut docs = Vec::new();
    for system in [
        "Answer briefly.",
        "You are a careful reader; answer in one word.",
    ] {
        let messages = turns(system);
        let (ids, starts) = t.prompt_ids_and_starts(&tok, &messages).unwrap();
        assert_eq!(ids, t.prompt_ids(&tok, &messages).unwrap());
        assert_eq!(starts.len(), 3, "{starts:?}");
        assert!(starts.iter().all(|&s| ids[s] == open[0]), "{starts:?}");
        docs.push(ids[starts[0]..starts[1]].to_vec());
    }
    assert_eq!(docs[0], docs[1]);
    // Without a system turn the template adds its own; the later turns still start cleanly,
    // and the document's turn, right before the first of them, has the same tokens.
    let (ids, starts) = t.prompt_ids_and_starts(&tok, &turns("x")[1..]).unwrap();
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(ids[starts[0] - docs[0].len()..starts[0]], docs[0]);
}
