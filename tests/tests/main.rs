//! One integration-test binary (linking burn once).
//!
//! - `chat`: chat templates against Jinja2.
//! - `cpu_kernels`: the CPU kernels (attention, the SwiGLU gate, few-row products) against their
//!   definitions and burn, and caches that grow in place.
//! - `parity_tiny`: a seeded random GQA Llama against transformers, layer by layer.
//! - `parity_smollm2`: the real default model (GGUF) against transformers.
//! - `gguf`: dequantisation against gguf-py, and malformed files.
//! - `loading`: strict loading errors.
//! - `memory`: the document memory and the cached-window decoding.
//! - `mutations`: the GGUF reader and the candidate-weights loader against thousands of
//!   mutated files (no panic; bounded allocation for GGUF).
//! - `precision`: f16 and bf16 against the f32 references, each in a process of its own.
//! - `reserved`: the held-out haystack against the fetched texts; training refuses it.
//! - `training`: the training loss, step, resume and low-rank updates on the tiny model.

mod chat;
#[cfg(feature = "flex")]
mod cpu_kernels;
mod focus_fidelity;
mod gguf;
mod loading;
mod memory;
mod mutations;
mod parity_smollm2;
mod parity_tiny;
mod precision;
mod reserved;
mod training;

/// The largest single allocation this thread makes while running `f`, and `f`'s result.
/// The test binary's allocator records it; other threads are not counted.
pub(crate) fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    alloc::LARGEST.with(|c| c.set(0));
    let out = f();
    (out, alloc::LARGEST.with(|c| c.get()))
}

mod alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        pub static LARGEST: Cell<usize> = const { Cell::new(0) };
    }

    fn note(size: usize) {
        // During thread teardown the slot may be gone: then nothing is recorded.
        let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
    }

    /// The system allocator, noting each thread's largest allocation.
    struct Recording;

    // SAFETY: every call is forwarded unchanged to the system allocator.
    unsafe impl GlobalAlloc for Recording {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static GLOBAL: Recording = Recording;
}
