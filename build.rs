//! Links both binaries, `delicate` and `delicate-executor`, with packed
//! relative relocations (DT_RELR) on Linux with glibc.
//!
//! A position-independent Rust binary of this size carries about 59,000
//! relative relocations. As 24-byte `.rela.dyn` entries they take 1.4 MB,
//! which the dynamic loader reads into memory at every start. Packed, they
//! take about 20 KB, and every node's resident memory is smaller by about
//! that much. The binary stays position-independent, so ASLR still applies.
//!
//! Packed relocations need GNU ld 2.38 or lld 15 to link and glibc 2.36 to
//! run. Set `DELICATE_PACKED_RELOCS=0` to build for an older glibc.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DELICATE_PACKED_RELOCS");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let enabled = std::env::var("DELICATE_PACKED_RELOCS").map_or(true, |value| value != "0");
    if enabled && target_os == "linux" && target_env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
