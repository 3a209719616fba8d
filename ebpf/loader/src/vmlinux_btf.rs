//! Keeping aya 0.14 from parsing the kernel's BTF, which Sluice's object
//! does not need.
//!
//! `EbpfLoader::new()` reads and parses all of `/sys/kernel/btf/vmlinux`
//! (5.5 MB here: ~12 ms of CPU, and ~2 ms more to free it) to resolve CO-RE
//! relocations. The committed object has none (a test below checks it), and
//! aya 0.14 has no loader without that parse (`EbpfLoader::btf(None)` only
//! applies after it). [`hide_from_this_thread`] gives the calling thread a
//! mount namespace of its own in which `/dev/null` is bind-mounted over that
//! file: aya's read finds nothing, and the loader goes on without kernel BTF,
//! as with `btf(None)`. Nothing changes for the rest of the process (the
//! namespace belongs to the thread and goes with it); propagation is made
//! private first, so the mount is seen nowhere else. It needs
//! `CAP_SYS_ADMIN`; without it, or if any step fails, aya parses as before.

use std::ffi::CStr;

/// The file aya 0.14 parses in `EbpfLoader::new()`.
pub(crate) const VMLINUX: &CStr = c"/sys/kernel/btf/vmlinux";

/// Hides [`VMLINUX`] from the calling thread (and threads it starts).
/// Returns whether it is hidden. Call on a thread that only loads the
/// object: the thread's root, cwd and mounts become its own.
pub(crate) fn hide_from_this_thread() -> bool {
    // SAFETY: plain syscalls with NUL-terminated paths; CLONE_NEWNS (which
    // implies CLONE_FS) only affects the calling thread.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return false;
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return false;
        }
        libc::mount(
            c"/dev/null".as_ptr(),
            VMLINUX.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        ) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmlinux_len() -> Option<u64> {
        let path = VMLINUX.to_str().expect("UTF-8");
        std::fs::metadata(path).ok().map(|meta| meta.len())
    }

    #[test]
    fn the_object_needs_no_co_re_relocation() {
        let object = aya_obj::Object::parse(crate::OBJECT).expect("the committed object parses");
        assert!(
            !object.has_btf_relocations(),
            "the object now has CO-RE relocations: stop hiding the kernel BTF from the loader"
        );
    }

    #[test]
    fn the_kernel_btf_is_hidden_from_one_thread_only() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || vmlinux_len().is_none() {
            let reason = "not root, or no kernel BTF";
            if std::env::var("CI").is_ok_and(|v| v == "true") && unsafe { libc::geteuid() } != 0 {
                panic!("must run under CI=true, but: {reason}");
            }
            eprintln!("skipping: {reason}");
            return;
        }
        let (hidden, seen_there) = std::thread::spawn(|| (hide_from_this_thread(), vmlinux_len()))
            .join()
            .expect("thread");
        assert!(hidden);
        assert_eq!(seen_there, Some(0));
        assert!(
            vmlinux_len().is_some_and(|len| len > 0),
            "hidden from the whole process"
        );
    }
}
