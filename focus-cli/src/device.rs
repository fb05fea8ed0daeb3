//! `--device` and `--dtype`: the only place that chooses a backend.

use anyhow::{Result, bail};
use burn::prelude::*;
#[allow(unused_imports)]
use burn::tensor::DeviceKind;
use burn::tensor::FloatDType;

/// Backends compiled into this binary, for help and error messages.
pub fn compiled() -> Vec<&'static str> {
    let mut v = vec!["auto"];
    #[cfg(feature = "flex")]
    v.push("cpu");
    #[cfg(feature = "wgpu")]
    v.push("wgpu");
    #[cfg(feature = "vulkan")]
    v.push("vulkan");
    #[cfg(feature = "metal")]
    v.push("metal");
    #[cfg(feature = "cuda")]
    v.push("cuda[:N]");
    v
}

/// Parses a device name: `auto` (honours `BURN_DEVICE`), `cpu`, `wgpu`, `vulkan`,
/// `metal`, `cuda[:N]`, each only when compiled in.
pub fn parse(name: &str) -> Result<Device> {
    let (kind, index) = match name.split_once(':') {
        Some((k, i)) => (
            k,
            i.parse::<usize>()
                .map_err(|_| anyhow::anyhow!("bad device index in {name:?}"))?,
        ),
        None => (name, 0),
    };
    #[cfg(not(feature = "cuda"))]
    let _ = index; // only CUDA devices are numbered here
    let device = match kind {
        "auto" => {
            // BURN_DEVICE takes the same names as --device (burn's own parser panics on
            // a backend that is not compiled in, and its `cpu` is another backend).
            match std::env::var("BURN_DEVICE") {
                Ok(v) if !v.trim().is_empty() && v.trim() != "auto" => return parse(v.trim()),
                _ => return parse(default_name()),
            }
        }
        #[cfg(feature = "flex")]
        "cpu" | "flex" => Device::flex(),
        #[cfg(feature = "wgpu")]
        "wgpu" => Device::wgpu(DeviceKind::DefaultDevice),
        #[cfg(feature = "vulkan")]
        "vulkan" => Device::vulkan(DeviceKind::DefaultDevice),
        #[cfg(feature = "metal")]
        "metal" => Device::metal(DeviceKind::DefaultDevice),
        #[cfg(feature = "cuda")]
        "cuda" => Device::cuda(index),
        _ => bail!(
            "unknown or not compiled-in device {name:?} (this build has: {})",
            compiled().join(", ")
        ),
    };
    Ok(device)
}

/// What `auto` means without `BURN_DEVICE`: the CPU when compiled in.
fn default_name() -> &'static str {
    if cfg!(feature = "flex") {
        "cpu"
    } else if cfg!(feature = "cuda") {
        "cuda"
    } else if cfg!(feature = "vulkan") {
        "vulkan"
    } else {
        "wgpu"
    }
}

/// Sets the float type of a device (`f32`, `f16`, `bf16`), checking support.
pub fn set_dtype(device: &mut Device, dtype: &str) -> Result<()> {
    let (ft, dt) = match dtype {
        "f32" => return Ok(()),
        "f16" => (FloatDType::F16, burn::tensor::DType::F16),
        "bf16" => (FloatDType::BF16, burn::tensor::DType::BF16),
        other => bail!("unknown dtype {other:?} (f32, f16, bf16)"),
    };
    if !device.supports_dtype(dt) {
        bail!("this device does not support {dtype}");
    }
    device
        .configure(ft)
        .map_err(|e| anyhow::anyhow!("cannot use {dtype} on this device: {e:?}"))
}
