//! Process memory housekeeping: handing heap the allocator keeps but no
//! longer uses back to the kernel, after start-up work that needed a lot of
//! it briefly (the Envoy descriptor pool, see `config::descriptors`).

/// Returns the free pages of the heap to the kernel (`malloc_trim(0)`:
/// glibc otherwise keeps freed memory below the top of its heap mapped,
/// and it stays in the process's RSS). A no-op with other allocators/libcs.
pub fn return_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own allocator state, under its
    // own locks; it takes no pointer from us.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_heap_is_returned_without_disturbing_live_allocations() {
        let keep: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 4096]).collect();
        let freed: Vec<Vec<u8>> = (0..1024).map(|_| vec![1u8; 16 * 1024]).collect();
        drop(freed);
        return_free_heap();
        assert!(keep
            .iter()
            .enumerate()
            .all(|(i, block)| block.iter().all(|&b| b == i as u8)));
    }
}
