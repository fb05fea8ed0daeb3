//! `--device` and `--dtype`: the only place that chooses a backend.

use anyhow::{Result, bail};
use burn::prelude::*;
// Used only by the GPU backends' arms, which a CPU-only build leaves out.
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

/// `BURN_DEVICE` as the user set it (trimmed), read once by [`read_env`].
static ENV: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `BURN_DEVICE` as the user set it, in this program's names.
pub fn env() -> Option<String> {
    ENV.get().cloned().or_else(|| {
        std::env::var("BURN_DEVICE")
            .ok()
            .map(|v| v.trim().to_string())
    })
}

/// `BURN_DEVICE` takes this program's device names (`cpu`, `cuda:1`, `auto`), but burn reads
/// it too wherever it makes a default device (loading an optimizer's state does), and panics on
/// names it spells otherwise. Keeps the value for [`DeviceName::device`], then rewrites the
/// variable to burn's spelling of the same device.
pub fn read_env() {
    let Ok(v) = std::env::var("BURN_DEVICE") else {
        return;
    };
    let v = ENV.get_or_init(|| v.trim().to_string()).as_str();
    let burn = match v.split_once(':').map_or(v, |(kind, _)| kind) {
        "" | "auto" => None,
        "cpu" => Some("flex"),
        kind if kind != v => Some(kind),
        _ => return,
    };
    // SAFETY: called first thing in `main`, before any other thread exists.
    unsafe {
        match burn {
            Some(name) => std::env::set_var("BURN_DEVICE", name),
            None => std::env::remove_var("BURN_DEVICE"),
        }
    }
}

/// Whether `device` computes on the host CPU (its caches then take host memory).
pub fn is_cpu(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        *device == Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

/// `--device`: a backend compiled into this binary, checked when the arguments are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceName {
    /// `BURN_DEVICE` when set (with the same names), else the CPU when compiled in.
    Auto,
    Cpu,
    Wgpu,
    Vulkan,
    Metal,
    /// A CUDA device by index.
    Cuda(usize),
}

impl std::str::FromStr for DeviceName {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<Self, String> {
        let name = name.trim();
        let (kind, index) = match name.split_once(':') {
            Some((k, i)) => (
                k,
                Some(
                    i.parse::<usize>()
                        .map_err(|_| format!("bad device index in {name:?}"))?,
                ),
            ),
            None => (name, None),
        };
        let device = match (kind, index) {
            ("auto", None) => Self::Auto,
            ("cpu" | "flex", None) if cfg!(feature = "flex") => Self::Cpu,
            ("wgpu", None) if cfg!(feature = "wgpu") => Self::Wgpu,
            ("vulkan", None) if cfg!(feature = "vulkan") => Self::Vulkan,
            ("metal", None) if cfg!(feature = "metal") => Self::Metal,
            ("cuda", i) if cfg!(feature = "cuda") => Self::Cuda(i.unwrap_or(0)),
            _ => {
                return Err(format!(
                    "unknown or not compiled-in device {name:?} (this build has: {})",
                    compiled().join(", ")
                ));
            }
        };
        Ok(device)
    }
}

impl std::fmt::Display for DeviceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Wgpu => f.write_str("wgpu"),
            Self::Vulkan => f.write_str("vulkan"),
            Self::Metal => f.write_str("metal"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceName {
    /// The device: `auto` resolved (through `BURN_DEVICE`, which takes the same names:
    /// burn's own parser panics on a backend that is not compiled in, and its `cpu` is
    /// another backend).
    pub fn device(self) -> Result<Device> {
        Ok(match self {
            Self::Auto => match env() {
                Some(v) if !v.is_empty() && v != "auto" => match v
                    .parse::<Self>()
                    .map_err(|e| anyhow::anyhow!("BURN_DEVICE: {e}"))?
                {
                    Self::Auto => Self::default_device(),
                    name => name,
                }
                .device()?,
                _ => Self::default_device().device()?,
            },
            #[cfg(feature = "flex")]
            Self::Cpu => Device::flex(),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => Device::wgpu(DeviceKind::DefaultDevice),
            #[cfg(feature = "vulkan")]
            Self::Vulkan => Device::vulkan(DeviceKind::DefaultDevice),
            #[cfg(feature = "metal")]
            Self::Metal => Device::metal(DeviceKind::DefaultDevice),
            #[cfg(feature = "cuda")]
            Self::Cuda(i) => Device::cuda(i),
            // Parsing admits only the backends compiled in.
            #[allow(unreachable_patterns)]
            other => bail!("device {other} is not compiled into this build"),
        })
    }

    /// What `auto` means without `BURN_DEVICE`: the CPU when compiled in.
    fn default_device() -> Self {
        if cfg!(feature = "flex") {
            Self::Cpu
        } else if cfg!(feature = "cuda") {
            Self::Cuda(0)
        } else if cfg!(feature = "vulkan") {
            Self::Vulkan
        } else {
            Self::Wgpu
        }
    }
}

/// `--dtype`: the float type of the computation.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

impl Dtype {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        }
    }

    /// burn's name of the type.
    pub fn burn(self) -> burn::tensor::DType {
        match self {
            Self::F32 => burn::tensor::DType::F32,
            Self::F16 => burn::tensor::DType::F16,
            Self::Bf16 => burn::tensor::DType::BF16,
        }
    }
}

/// Sets the float type of a device, checking support.
pub fn set_dtype(device: &mut Device, dtype: Dtype) -> Result<()> {
    let ft = match dtype {
        Dtype::F32 => return Ok(()),
        Dtype::F16 => FloatDType::F16,
        Dtype::Bf16 => FloatDType::BF16,
    };
    let dt = dtype.burn();
    let dtype = dtype.name();
    if !device.supports_dtype(dt) {
        bail!("this device does not support {dtype}");
    }
    device
        .configure(ft)
        .map_err(|e| anyhow::anyhow!("cannot use {dtype} on this device: {e:?}"))
}
