//! Lays out the shim's executable code so that what a serving shim runs sits together: the
//! linker places the functions listed in `hot-symbols.txt` (written by `scripts/hot-symbols`
//! from a coverage run) first, in that order. An idle shim then maps 1.9 MiB of text instead of
//! 3.3 MiB in blocks scattered over all 5 MiB (docs/shim.md, Process model, "Code layout"). A
//! stale list (renamed functions after a toolchain or dependency update) only moves fewer
//! functions.
//!
//! `--symbol-ordering-file` is an LLD option: it is passed where Rust links with its bundled
//! LLD by default (x86_64-unknown-linux-gnu since Rust 1.90) and no other linker is configured.

use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=hot-symbols.txt");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if links_with_lld() {
        let list = format!(
            "{}/hot-symbols.txt",
            env::var("CARGO_MANIFEST_DIR").unwrap()
        );
        for flag in [
            format!("-Wl,--symbol-ordering-file={list}"),
            // Functions of the list that this build does not have (renamed, inlined) are skipped.
            "-Wl,--no-warn-symbol-ordering".to_string(),
        ] {
            println!("cargo:rustc-link-arg-bin=containerd-shim-lifecycle-v1={flag}");
        }
    }
}

fn links_with_lld() -> bool {
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return false;
    }
    // A linker named in the configuration, or linker flags of one's own, decide for themselves.
    if env::var_os("RUSTC_LINKER").is_some() {
        return false;
    }
    let rustflags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if rustflags.split('\x1f').any(|f| {
        f.contains("linker-features") || f.contains("fuse-ld") || f.contains("link-self-contained")
    }) {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    // "rustc 1.95.0 (...)": bundled LLD is the default from 1.90 on.
    let minor = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    matches!(minor, Some(m) if m >= 90)
}
