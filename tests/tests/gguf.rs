//! GGUF: dequantisation of every supported type against gguf-py, and malformed files.

use focus_model::Error;
use focus_model::gguf::{GgmlType, GgufFile, dequantize};
use focus_tests::{Reference, max_abs_diff};

#[test]
fn dequantisation_matches_gguf_py() {
    let r = Reference::open("gguf-quants.safetensors");
    for (name, ty) in [
        ("q4_0", GgmlType::Q4_0),
        ("q4_1", GgmlType::Q4_1),
        ("q8_0", GgmlType::Q8_0),
        ("q4_k", GgmlType::Q4K),
        ("q6_k", GgmlType::Q6K),
        ("f16", GgmlType::F16),
        ("bf16", GgmlType::BF16),
    ] {
        let raw = r.bytes(&format!("{name}.raw"));
        let expected = r.f32(&format!("{name}.f32"));
        let got = dequantize(ty, &raw, expected.len());
        // gguf-py computes in f32 (f16 scales widened), as we do: observed error 0.
        let err = max_abs_diff(&got, &expected);
        assert!(
            err <= 1e-6 * focus_tests::max_abs(&expected),
            "{name}: max error {err}"
        );
    }
}

fn write_tmp(bytes: &[u8]) -> tempfile::NamedTempFile {
    use std::io::Write;
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    f
}

#[test]
fn malformed_files_are_errors_not_panics() {
    let not_gguf = write_tmp(b"this is not a model");
    assert!(matches!(
        GgufFile::open(not_gguf.path()),
        Err(Error::Gguf { .. })
    ));

    let empty = write_tmp(b"");
    assert!(matches!(
        GgufFile::open(empty.path()),
        Err(Error::Gguf { .. })
    ));

    // A header that promises more metadata than the file holds.
    let mut h = b"GGUF".to_vec();
    h.extend(3u32.to_le_bytes());
    h.extend(0u64.to_le_bytes());
    h.extend(5u64.to_le_bytes());
    let truncated = write_tmp(&h);
    let err = GgufFile::open(truncated.path()).unwrap_err();
    assert!(
        err.to_string().contains("metadata count 5 cannot fit"),
        "{err}"
    );

    // Counts far beyond what the file can hold are refused before any allocation.
    for (tensors, kv, what) in [
        (1u64 << 40, 0u64, "tensor count"),
        (0, u64::MAX, "metadata count"),
    ] {
        let mut h = b"GGUF".to_vec();
        h.extend(3u32.to_le_bytes());
        h.extend(tensors.to_le_bytes());
        h.extend(kv.to_le_bytes());
        h.extend([0u8; 64]);
        let f = write_tmp(&h);
        let err = GgufFile::open(f.path()).unwrap_err();
        assert!(err.to_string().contains(&format!("{what} ")), "{err}");
        assert!(err.to_string().contains("cannot fit"), "{err}");
    }
}

#[test]
fn truncated_real_model_is_an_error() {
    let Some(path) = focus_tests::smollm2_path() else {
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    let cut = write_tmp(&bytes[..bytes.len() / 2]);
    let err = GgufFile::open(cut.path()).unwrap_err();
    assert!(err.to_string().contains("extends past the end"), "{err}");
}
