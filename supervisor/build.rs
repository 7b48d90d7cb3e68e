//! Builds `supervisor-ebpf` for the BPF target (nightly, via aya-build) and
//! leaves the object in OUT_DIR for `include_bytes_aligned!`.
//!
//! As aya-template does, the build can be skipped: with `AYA_BUILD_SKIP=1`,
//! or when bpf-linker is not installed (outside CI), an empty object is
//! written instead, so that `cargo check`, `cargo clippy` and the unit tests
//! work on stable alone. Such a binary says so in `supervisor check`.
use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    println!("cargo:rerun-if-env-changed=CI");
    if let Some(reason) = skip_reason() {
        println!("cargo:warning={reason}: building without the eBPF object (the ebpf backend will not be available)");
        let out_dir = std::env::var_os("OUT_DIR").context("OUT_DIR not set")?;
        let object = std::path::Path::new(&out_dir).join("supervisor-ebpf");
        std::fs::write(&object, []).with_context(|| format!("writing {}", object.display()))?;
        return Ok(());
    }
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "supervisor-ebpf")
        .ok_or_else(|| anyhow!("supervisor-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    aya_build::build_ebpf(
        [Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )
}

/// Why the eBPF object is not built, if it is not. Under CI a missing
/// bpf-linker is an error (aya-build reports it), never a quiet skip.
fn skip_reason() -> Option<String> {
    let set =
        |name: &str| std::env::var(name).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if set("AYA_BUILD_SKIP") {
        return Some("AYA_BUILD_SKIP is set".to_owned());
    }
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("bpf-linker").is_file())
    });
    let in_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .is_some_and(|home| home.join("bin/bpf-linker").is_file());
    (!on_path && !in_home && !set("CI")).then(|| "bpf-linker is not installed".to_owned())
}
