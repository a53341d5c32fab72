//! Memory for a process that sits idle beside the editor for hours. A start-up pass reads every
//! file with a codemark and every codemark (tens of megabytes for 10,000 codemarks), then keeps
//! a few: what it freed should leave the process, not stay resident. glibc only; elsewhere the
//! allocator's defaults stand.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    // From glibc's <malloc.h>.
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    /// Both thresholds, fixed: buffers up to 4 MiB (a thousand code lenses' answer is about
    /// 300 KiB) reuse the heap instead of faulting in fresh pages every time, and no arena keeps
    /// more than 4 MiB free at its top.
    const THRESHOLD: i32 = 4 * 1024 * 1024;

    unsafe extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
        fn malloc_trim(pad: usize) -> i32;
    }

    pub fn keep_idle_lean() {
        // SAFETY: mallopt only changes the allocator's tuning; it takes no pointers.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, THRESHOLD);
            mallopt(M_TRIM_THRESHOLD, THRESHOLD);
        }
    }

    pub fn release() {
        // SAFETY: malloc_trim only returns unused heap pages to the kernel; it takes no
        // pointers and is safe to call from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Fixes the allocator's thresholds. Left to itself, glibc raises both after freeing a big
/// buffer (up to 32 MiB), and from then on keeps that much free memory at the top of each
/// thread's arena, where `malloc_trim` does not reach: measured with 10,000 codemarks, a third
/// to half of the idle runs kept 7 MiB more than the others. Called once, at start.
pub fn keep_idle_lean() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc::keep_idle_lean();
}

/// Hands memory freed by a big pass back to the system: glibc keeps freed memory in per-thread
/// arenas, and the blocking pool's threads each get one.
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc::release();
}
