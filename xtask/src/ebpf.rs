//! `cargo xtask build-ebpf`: sets up the BPF toolchain in `.tools/` (from
//! Debian packages, nothing installed over the system's Rust) and rebuilds the
//! kernel programs into the committed object `ebpf/sluice.bpf.o`.
//!
//! Toolchain (see notes/ebpf-facts.md):
//! - `rustc-web` 1.96 with its `core` sources (`rust-web-src`): `apt-get
//!   download` + `dpkg -x` into `.tools/rust-web`, used as `RUSTC` with
//!   `RUSTC_BOOTSTRAP=1 -Z build-std=core` for `bpfel-unknown-none`;
//! - `bpf-linker` 0.13 built against Debian's LLVM 22 (`llvm-22-dev`, which
//!   also provides the `libLLVM.so.22.1` rustc-web links to) into `.tools/bin`.
//!
//! The object carries BTF (`-C debuginfo=2 -C link-arg=--btf`) and is built
//! with `trim-paths` and without its DWARF sections (BTF stays), so the same
//! sources give the same bytes wherever the repository is checked out (CI compares it with the committed
//! one). `--check` fails if the rebuilt object differs from the committed one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Debian bookworm-security version of the rustc-web packages. Pinned: the
/// committed object must be reproducible.
const RUST_WEB_VERSION: &str = "1.96.0+dfsg1-1~deb12u2";
const RUST_WEB_PACKAGES: [&str; 4] = [
    "rustc-web",
    "libstd-rust-web-1.96",
    "libstd-rust-web-dev",
    "rust-web-src",
];
const LLVM_PACKAGES: [&str; 2] = ["llvm-22-dev", "libpolly-22-dev"];
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER: &str = "bpf-linker@0.13.0";
const BPF_TARGET: &str = "bpfel-unknown-none";
/// Where the built object is committed, relative to the workspace root.
pub const OBJECT_PATH: &str = "ebpf/sluice.bpf.o";

pub fn run(args: &[String]) -> Result<(), String> {
    let mut check = false;
    for arg in args {
        match arg.as_str() {
            "--check" => check = true,
            other => {
                return Err(format!(
                    "build-ebpf: unknown argument '{other}' (expected --check)"
                ))
            }
        }
    }
    let root = crate::workspace_root();
    let tools = root.join(".tools");
    let started = Instant::now();
    ensure_llvm()?;
    let rust_web = ensure_rust_web(&tools)?;
    let linker = ensure_bpf_linker(&tools)?;
    eprintln!(
        "build-ebpf: toolchain ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let built = build_programs(&root, &rust_web, &linker)?;
    let stripped = strip_dwarf(&built)?;
    let committed = root.join(OBJECT_PATH);
    let new_bytes = read(&stripped)?;
    if check {
        let old_bytes = read(&committed)?;
        if old_bytes != new_bytes {
            return Err(format!(
                "{OBJECT_PATH} is stale: rebuilding from ebpf/programs gives a different object \
                 ({} bytes vs {} committed); run `cargo xtask build-ebpf` and commit it",
                new_bytes.len(),
                old_bytes.len()
            ));
        }
        eprintln!(
            "build-ebpf: {OBJECT_PATH} is up to date ({} bytes)",
            new_bytes.len()
        );
    } else {
        std::fs::write(&committed, &new_bytes)
            .map_err(|e| format!("cannot write {}: {e}", committed.display()))?;
        eprintln!(
            "build-ebpf: wrote {OBJECT_PATH} ({} bytes)",
            new_bytes.len()
        );
    }
    eprintln!(
        "build-ebpf: done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn run_command(command: &mut Command, what: &str) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// LLVM 22: bpf-linker links to its shared library, rustc-web needs it, and
/// `llvm-objcopy` strips the object.
fn ensure_llvm() -> Result<(), String> {
    let prefix = Path::new(LLVM_PREFIX);
    if ["lib/libLLVM.so.22.1", "bin/llvm-config", "bin/llvm-objcopy"]
        .iter()
        .all(|file| prefix.join(file).exists())
    {
        return Ok(());
    }
    eprintln!("build-ebpf: installing {}", LLVM_PACKAGES.join(" "));
    run_command(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(LLVM_PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install (needs root; or install the packages yourself)",
    )
}

/// `.tools/rust-web/usr/bin/rustc`, downloaded and unpacked if missing.
fn ensure_rust_web(tools: &Path) -> Result<PathBuf, String> {
    let unpacked = tools.join("rust-web");
    let rustc = unpacked.join("usr/bin/rustc");
    let core_sources = unpacked.join("usr/lib/rustlib/src/rust/library/core");
    if rustc.exists() && core_sources.exists() {
        return Ok(unpacked);
    }
    let debs = tools.join("debs");
    std::fs::create_dir_all(&debs).map_err(|e| format!("cannot create {}: {e}", debs.display()))?;
    eprintln!("build-ebpf: downloading rustc-web {RUST_WEB_VERSION}");
    let pinned: Vec<String> = RUST_WEB_PACKAGES
        .iter()
        .map(|package| format!("{package}={RUST_WEB_VERSION}"))
        .collect();
    run_command(
        Command::new("apt-get")
            .arg("download")
            .args(&pinned)
            .current_dir(&debs),
        "apt-get download",
    )?;
    let entries =
        std::fs::read_dir(&debs).map_err(|e| format!("cannot read {}: {e}", debs.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "deb") {
            run_command(
                Command::new("dpkg").arg("-x").arg(&path).arg(&unpacked),
                "dpkg -x",
            )?;
        }
    }
    if !rustc.exists() || !core_sources.exists() {
        return Err(format!(
            "{} has no rustc or core sources after unpacking",
            unpacked.display()
        ));
    }
    Ok(unpacked)
}

/// `.tools/bin/bpf-linker`, built with `cargo install` if missing.
fn ensure_bpf_linker(tools: &Path) -> Result<PathBuf, String> {
    let linker = tools.join("bin/bpf-linker");
    if linker.exists() {
        return Ok(linker);
    }
    eprintln!("build-ebpf: building {BPF_LINKER} against LLVM 22 (about 2 minutes)");
    run_command(
        Command::new("cargo")
            .args(["install", BPF_LINKER])
            .args(["--no-default-features", "--features", "llvm-22", "--root"])
            .arg(tools)
            // llvm-sys and bpf-linker's own build script look for LLVM
            // under different variables.
            .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX)
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .env("CARGO_TARGET_DIR", tools.join("bpf-linker-build")),
        "cargo install bpf-linker",
    )?;
    Ok(linker)
}

/// Drops the DWARF sections (they hold build directories) and keeps BTF,
/// which is what the loader, the verifier and `bpftool` use. Local symbols
/// whose mangled names carry a crate hash (closures, statics) get the hash
/// zeroed: with `-Z build-std` the hash depends on where the checkout and its
/// `.tools/` live, and the object must not.
fn strip_dwarf(built: &Path) -> Result<PathBuf, String> {
    let stripped = built.with_extension("stripped.o");
    let llvm_bin = Path::new(LLVM_PREFIX).join("bin");
    let symbols = Command::new(llvm_bin.join("llvm-nm"))
        .args(["--just-symbol-name", "--no-sort"])
        .arg(built)
        .output()
        .map_err(|e| format!("llvm-nm: {e}"))?;
    if !symbols.status.success() {
        return Err(format!(
            "llvm-nm failed: {}",
            String::from_utf8_lossy(&symbols.stderr)
        ));
    }
    let mut objcopy = Command::new(llvm_bin.join("llvm-objcopy"));
    objcopy.arg("--strip-debug");
    for name in String::from_utf8_lossy(&symbols.stdout).lines() {
        let stable = without_crate_hashes(name);
        if stable != name {
            objcopy.arg(format!("--redefine-sym={name}={stable}"));
        }
    }
    run_command(
        objcopy.arg(built).arg(&stripped),
        "llvm-objcopy --strip-debug",
    )?;
    Ok(stripped)
}

/// `name` with every crate disambiguator of Rust's v0 mangling
/// (`Cs<base-62>_`) replaced by zeros of the same length.
fn without_crate_hashes(name: &str) -> String {
    if !name.starts_with("_R") {
        return name.to_string();
    }
    let mut stable = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find("Cs") {
        let (before, after) = rest.split_at(at + 2);
        stable.push_str(before);
        let hash_len = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        if after[hash_len..].starts_with('_') && hash_len > 0 {
            stable.extend(std::iter::repeat_n('0', hash_len));
            rest = &after[hash_len..];
        } else {
            rest = after;
        }
    }
    stable.push_str(rest);
    stable
}

/// Builds `ebpf/programs` and returns the path of the linked object.
fn build_programs(root: &Path, rust_web: &Path, linker: &Path) -> Result<PathBuf, String> {
    let programs = root.join("ebpf/programs");
    let target_dir = root.join("target/bpf");
    let mut path = linker
        .parent()
        .expect("bpf-linker lives in a bin folder")
        .as_os_str()
        .to_owned();
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    // No path in RUSTFLAGS: cargo hashes them into local crates' symbol
    // names. Paths are trimmed by the profile's `trim-paths` instead.
    let rustflags = "-C debuginfo=2 -C link-arg=--btf";
    eprintln!("build-ebpf: building ebpf/programs for {BPF_TARGET}");
    run_command(
        Command::new("cargo")
            .args(["build", "--release", "--locked", "-Z", "build-std=core"])
            .args(["--target", BPF_TARGET, "--target-dir"])
            .arg(&target_dir)
            .current_dir(&programs)
            .env("RUSTC", rust_web.join("usr/bin/rustc"))
            .env("LD_LIBRARY_PATH", rust_web.join("usr/lib/x86_64-linux-gnu"))
            .env("RUSTC_BOOTSTRAP", "1")
            .env("RUSTFLAGS", rustflags)
            .env("PATH", path)
            .env_remove("RUSTC_WRAPPER")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .env_remove("RUSTUP_TOOLCHAIN"),
        "cargo build (ebpf/programs)",
    )?;
    Ok(target_dir.join(BPF_TARGET).join("release/sluice"))
}

#[cfg(test)]
mod tests {
    use super::without_crate_hashes;

    #[test]
    fn crate_hashes_in_v0_symbols_are_zeroed_and_other_names_kept() {
        assert_eq!(
            without_crate_hashes("_RNCNvCs7jWriepkyCG_6sluice7forwards4_0B3_"),
            "_RNCNvCs00000000000_6sluice7forwards4_0B3_"
        );
        assert_eq!(without_crate_hashes("sluice_xdp"), "sluice_xdp");
        assert_eq!(without_crate_hashes("memmove"), "memmove");
    }
}
