//! Strict loading: what is missing, unused or mis-shaped is named in the error.

use std::path::Path;

use focus_model::{Error, Mismatch, Misshaped, load};
use focus_tests::{device, fixture};

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

/// Rewrites the tiny model's safetensors through `edit`.
fn edited(
    edit: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("tiny-llama"), dir.path());
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
    dir
}

fn load_err(dir: &Path) -> String {
    match load(dir, &device()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// The structured mismatch of loading `dir`.
fn mismatch(dir: &Path) -> Mismatch {
    match load(dir, &device()) {
        Err(Error::Weights(m)) => *m,
        Err(e) => panic!("expected a weights mismatch, got: {e}"),
        Ok(_) => panic!("loading {} should fail", dir.display()),
    }
}

#[test]
fn missing_tensor_is_named() {
    let dir = edited(|t| t.retain(|(n, ..)| n != "model.layers.1.mlp.up_proj.weight"));
    let msg = load_err(dir.path());
    assert!(
        msg.contains("missing") && msg.contains("model.layers.1.mlp.up_proj.weight"),
        "{msg}"
    );
    let m = mismatch(dir.path());
    assert_eq!(m.missing, ["model.layers.1.mlp.up_proj.weight"]);
    assert!(m.unused.is_empty() && m.misshaped.is_empty() && m.other.is_empty());
    assert_eq!(m.path.as_deref(), Some(dir.path()));
}

#[test]
fn unused_tensor_is_named() {
    let dir = edited(|t| {
        t.push((
            "model.extra.weight".into(),
            safetensors::Dtype::F32,
            vec![2],
            vec![0; 8],
        ))
    });
    let msg = load_err(dir.path());
    assert!(
        msg.contains("unexpected") && msg.contains("model.extra.weight"),
        "{msg}"
    );
    let m = mismatch(dir.path());
    assert_eq!(m.unused, ["model.extra.weight"]);
    assert!(m.missing.is_empty() && m.misshaped.is_empty());
}

#[test]
fn misshaped_tensor_is_named() {
    let dir = edited(|t| {
        let e = t
            .iter_mut()
            .find(|(n, ..)| n == "model.norm.weight")
            .unwrap();
        e.2 = vec![32];
        e.3.truncate(32 * 4);
    });
    let msg = load_err(dir.path());
    assert!(
        msg.contains("tensor model.norm.") // burn's name for it: `gamma`
            && msg.contains("has shape [32] in the file, the model needs [64]"),
        "{msg}"
    );
    let m = mismatch(dir.path());
    assert_eq!(
        m.misshaped,
        [Misshaped {
            name: "model.norm.gamma".into(),
            in_file: vec![32],
            in_model: vec![64],
        }]
    );
    assert!(m.missing.is_empty() && m.unused.is_empty());
}

#[test]
fn unsupported_architecture_and_missing_dir() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("tiny-llama"), dir.path());
    let cfg = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        cfg.replace("\"llama\"", "\"gpt2\""),
    )
    .unwrap();
    assert!(matches!(
        load(dir.path(), &device()),
        Err(Error::Unsupported(_))
    ));

    let empty = tempfile::tempdir().unwrap();
    let msg = load_err(empty.path());
    assert!(msg.contains("config.json"), "{msg}");
    assert!(matches!(
        load(&empty.path().join("nope"), &device()),
        Err(Error::Io { .. })
    ));
}
