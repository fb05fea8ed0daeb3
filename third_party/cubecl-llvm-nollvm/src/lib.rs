//! A stand-in for `cubecl-llvm` 0.11.3 without LLVM.
//!
//! `cubecl-cuda` 0.11.3 has two kernel compilers: CUDA C++ handed to NVRTC (its `cpp`
//! feature makes it the default) and a pliron/LLVM lowering to PTX. It depends on
//! `cubecl-llvm` unconditionally, whose build script downloads an LLVM bundle, so a CUDA
//! build needs the network once even when the LLVM path is never taken. This crate takes
//! `cubecl-llvm`'s place (through the workspace's `[patch.crates-io]`) with the items
//! `cubecl-cuda` names, so that a build with NVRTC alone needs no LLVM and no network:
//!
//! - the PTX version and target types, which only the LLVM path reads;
//! - a [`PlironCompiler`] whose `compile` always fails, saying that this build compiles
//!   CUDA kernels through NVRTC. With `cubecl-cuda/cpp` enabled (focus' `cuda` feature
//!   does) it is never called.
//!
//! Nothing here lowers, links or loads code.

use cubecl_core::prelude::KernelDefinition;
use cubecl_environment::backtrace::BackTrace;
use cubecl_server::compiler::CompilationError;
use cubecl_server::kernel::BufferIOAttr;

pub mod nvptx {
    /// PTX versions.
    pub mod ptx_version {
        use core::fmt;

        /// A PTX ISA version as the NVPTX target spells it (8.7 is `87`). Only the LLVM
        /// path emits a PTX version of its own; without it there is none to choose.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct PtxVersion(pub u32);

        impl PtxVersion {
            /// The version the LLVM path would emit for a driver: none in this build.
            pub fn for_driver(_driver: i32) -> Option<Self> {
                None
            }
        }

        impl fmt::Display for PtxVersion {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "ptx{}", self.0)
            }
        }
    }
}

pub mod shared {
    /// What the LLVM path can lower, per target.
    pub mod lowered_features {
        use cubecl_core::ir::DeviceProperties;

        /// A GPU target of the LLVM path.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum GpuTarget {
            Nvptx,
        }

        /// Narrows `props` to what the LLVM path lowers. It is called only when the LLVM
        /// path is the selected compiler, which it cannot be in this build; the properties
        /// are left as the device reported them.
        pub fn restrict_features(_props: &mut DeviceProperties, _target: GpuTarget) {}
    }
}

/// The targets of the LLVM path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LlvmTarget {
    #[default]
    Cpu,
    Nvptx,
    AmdGpu,
}

/// Options of the LLVM path (accepted and ignored).
#[derive(Clone, Debug, Default)]
pub struct PlironOptions {
    pub arch: Option<cubecl_core::ir::amd::GfxArch>,
    pub sm_arch: Option<cubecl_core::ir::nvidia::SmArch>,
    pub ptx_version: Option<nvptx::ptx_version::PtxVersion>,
    pub grid_constants: bool,
}

/// A compiled PTX module (never produced here).
#[derive(Clone, Debug)]
pub struct NvptxModule {
    pub ptx: Vec<core::ffi::c_char>,
    pub entrypoint: String,
    pub ir: String,
    pub shared_memory_size: usize,
    pub io: Vec<BufferIOAttr>,
}

/// What the LLVM path produces (never produced here).
#[derive(Debug)]
pub enum PlironArtifact {
    NvptxCode(NvptxModule),
}

/// The LLVM path's compiler: it refuses every kernel.
#[derive(Clone, Debug, Default)]
pub struct PlironCompiler {
    pub target: LlvmTarget,
}

impl PlironCompiler {
    /// Fails: this build has no LLVM. Enable `cubecl-cuda/cpp` (focus' `cuda` feature does)
    /// so that kernels go to NVRTC instead.
    pub fn compile(
        &mut self,
        _kernel: KernelDefinition,
        _options: &PlironOptions,
    ) -> Result<PlironArtifact, CompilationError> {
        Err(CompilationError::Generic {
            reason: "this build of cubecl has no LLVM backend; CUDA kernels compile through \
                     NVRTC (cubecl-cuda's `cpp` feature)"
                .into(),
            backtrace: BackTrace::capture(),
        })
    }

    /// The language tag of the LLVM path's kernels.
    pub fn lang_tag(&self) -> &'static str {
        "llvm"
    }
}
