//! Shared helpers for the integration tests: the device under test, fixture paths,
//! reference tensors and error measures.

use std::path::PathBuf;

use burn::prelude::*;

/// The device the tests run on: `FOCUS_TEST_DEVICE` if set (`wgpu`, `vulkan`, `cuda`, when
/// compiled in), else flex.
pub fn device() -> Device {
    match std::env::var("FOCUS_TEST_DEVICE").as_deref() {
        #[cfg(feature = "wgpu")]
        Ok("wgpu") => Device::wgpu(Default::default()),
        #[cfg(feature = "vulkan")]
        Ok("vulkan") => Device::vulkan(Default::default()),
        #[cfg(feature = "cuda")]
        Ok("cuda") => Device::cuda(0),
        #[cfg(feature = "flex")]
        Ok("cpu" | "flex") | Err(_) => Device::flex(),
        Ok(other) => panic!("FOCUS_TEST_DEVICE={other:?} is not compiled into the tests"),
        #[cfg(not(feature = "flex"))]
        Err(_) => panic!("no FOCUS_TEST_DEVICE and no flex backend compiled in"),
    }
}

/// This package's folder. `cargo test` sets `CARGO_MANIFEST_DIR` when it runs a test, which
/// stays right when the checkout moves (cargo does not rebuild for a moved workspace, so the
/// compile-time value can name the old place); the compile-time value is the fallback.
fn package_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Path of a file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    package_dir().join("fixtures").join(name)
}

/// Path of a file under the repository's `.assets/` (fetched by `scripts/fetch-assets.sh`).
pub fn asset(name: &str) -> PathBuf {
    let root = package_dir().join("..");
    std::env::var_os("FOCUS_ASSETS")
        .map(PathBuf::from)
        .unwrap_or(root.join(".assets"))
        .join(name)
}

/// The default model, or `None` when it has not been fetched: the test calling this is then
/// skipped with a note naming the fetch command. Where `FOCUS_REQUIRE_ASSETS` is set (CI),
/// a missing model is a failure instead.
pub fn smollm2_path() -> Option<PathBuf> {
    asset_path("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// A fetched asset (a file or a folder), or `None` when it is missing, as [`smollm2_path`].
pub fn asset_path(name: &str) -> Option<PathBuf> {
    let p = asset(name);
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("FOCUS_REQUIRE_ASSETS").is_none(),
        "{} missing: run scripts/fetch-assets.sh first",
        p.display()
    );
    eprintln!(
        "skipped: {} missing (run scripts/fetch-assets.sh)",
        p.display()
    );
    None
}

/// A reference file of named tensors written by `tests/scripts/make_fixtures.py`.
#[derive(Debug)]
pub struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    /// Reads a safetensors fixture.
    pub fn open(name: &str) -> Self {
        let path = fixture(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self { bytes }
    }

    fn view(&self, key: &str) -> safetensors::tensor::TensorView<'_> {
        let st =
            safetensors::SafeTensors::deserialize(&self.bytes).expect("valid safetensors fixture");
        st.tensor(key)
            .unwrap_or_else(|_| panic!("fixture has no tensor {key}"))
    }

    /// Shape of a tensor.
    pub fn shape(&self, key: &str) -> Vec<usize> {
        self.view(key).shape().to_vec()
    }

    /// A f32 tensor, flattened.
    pub fn f32(&self, key: &str) -> Vec<f32> {
        let v = self.view(key);
        assert_eq!(v.dtype(), safetensors::Dtype::F32, "{key} is not f32");
        v.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    /// An i32 tensor as u32 ids, flattened.
    pub fn ids(&self, key: &str) -> Vec<u32> {
        let v = self.view(key);
        assert_eq!(v.dtype(), safetensors::Dtype::I32, "{key} is not i32");
        v.data()
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as u32)
            .collect()
    }

    /// A u8 tensor, flattened.
    pub fn bytes(&self, key: &str) -> Vec<u8> {
        self.view(key).data().to_vec()
    }
}

/// The values of a tensor as a flat f32 vector.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data")
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Largest absolute value.
pub fn max_abs(a: &[f32]) -> f32 {
    a.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// Whether f32 on the device under test may keep fewer significant bits than f32: the CUDA
/// and Vulkan backends' matrix products may round f32 operands to tf32 on tensor cores, and
/// their attention kernels may run on f16 fragments. Both keep 11 significant bits (unit
/// roundoff 2⁻¹¹), like f16; the CPU and wgpu's GL backend compute f32 as f32.
pub fn reduced_f32() -> bool {
    matches!(
        std::env::var("FOCUS_TEST_DEVICE").as_deref(),
        Ok("cuda" | "vulkan")
    )
}

/// Logit bounds of the tiny model computed in f16 throughout on the CPU (`precision`):
/// observed 2.7e-2 (plain decoder) and 4.8e-2 (FocusLLM). f16 rounds every operand and result
/// to 11 significant bits; tf32 products and f16 attention fragments round only the operands
/// of the matrix products to as many, so these bound what they can cause.
pub const F16_PLAIN: f32 = 5e-2;
pub const F16_FOCUS: f32 = 8e-2;
/// The same as a share of the largest magnitude compared (FocusLLM's 4.8e-2 on logits of up to
/// about 4 is 1.2 %), for hidden states, caches, gradients and losses.
pub const F16_SHARE: f32 = 2.5e-2;

/// The bound of an f32 comparison on the device under test: `cpu`, set from the error
/// observed on the CPU, where f32 is computed in f32; `reduced` (from the f16 bounds above)
/// where it may not be ([`reduced_f32`]).
pub fn f32_bound(cpu: f32, reduced: f32) -> f32 {
    if reduced_f32() { cpu.max(reduced) } else { cpu }
}

/// Index of the largest value of `row`, and its margin over the second largest.
pub fn top2(row: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY, f32::NEG_INFINITY);
    for (i, &v) in row.iter().enumerate() {
        if v > best.1 {
            best = (i, v, best.1);
        } else if v > best.2 {
            best.2 = v;
        }
    }
    (best.0, best.1 - best.2)
}
