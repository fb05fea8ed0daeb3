//! Kernels of this crate's own for the CPU backend (burn-flex), in f32 outside autodiff,
//! where burn-flex's are slow (docs/benchmarks.md has the profile): attention
//! ([`attention`]), the SwiGLU gate ([`swiglu`]), decoding's few-row products ([`gemv`])
//! and the larger products without burn-flex's copy of each output ([`gemm`]); and
//! key/value caches that grow in place ([`kv`]). The kernels compute the
//! same functions as the burn operations they replace, vectorise `exp` (burn-flex takes it
//! one number at a time through the C library), and run on rayon's pool like burn-flex.
//! Each is used only where [`applies`] holds (the caches: where [`kv::serves`] does);
//! elsewhere (other backends, reduced precision, training) the burn operations run.

pub mod attention;
pub mod gemm;
pub mod gemv;
pub mod kv;
pub mod swiglu;

use burn::prelude::*;
use burn::tensor::DType;

/// Whether these kernels serve `x`: f32 on the CPU backend, outside autodiff.
pub fn applies<const D: usize>(x: &Tensor<D>) -> bool {
    let device = x.device();
    x.dtype() == DType::F32 && !device.is_autodiff() && device == Device::flex()
}

/// Lanes of the vectorised loops: sixteen independent accumulators, which the compiler turns
/// into vector registers (a sum's order then differs from a serial loop's, as any vectorised
/// sum's does).
const LANES: usize = 16;

/// `vectorised!(fn name(args) -> R = body)` defines `name`, which calls `body` (an
/// `#[inline(always)]` function) compiled for the widest vector instructions the CPU has
/// (AVX-512 or AVX2 with FMA on x86-64, chosen at run time; the baseline elsewhere), so that
/// the loops inlined into it are vectorised for them.
macro_rules! vectorised {
    (fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $body:ident) => {
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `avx512` is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above, for `avx2`.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
use vectorised;

/// `exp(x)` for `x ≤ 0` without branches, so that a loop of it vectorises: `x = n ln 2 + r`
/// with `|r| ≤ ln 2 / 2`, `e^r` by its Taylor series to `r⁷` (truncation below 6e-9
/// relative), `2ⁿ` built in the exponent bits. Arguments below -87 give `exp(-87)` (about
/// 1.6e-38) in place of smaller numbers or zero: negligible beside the row's largest
/// weight, which is 1.
#[inline(always)]
pub fn exp_neg(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, the first exact in few bits, so that `n · LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2²³: adding it rounds to an integer, held in the low bits of the sum.
    const ROUND: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let t = x * LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let exponent = (t.to_bits() as i32 - ROUND.to_bits() as i32 + 127) << 23;
    p * f32::from_bits(exponent as u32)
}
