//! Lays out the release `oncall` binary's functions in the order
//! `symbol-order.txt` gives (written by `bench/symbol-order`): the code the
//! server runs from start through its commands, together, hottest first.
//!
//! Why: the kernel maps a binary's text in 64 KiB windows around each page
//! first touched, so code the server runs scattered across 27 MB of text
//! kept most of that text resident (issue 11's idle RSS), and the hot path
//! spread over more pages than the instruction caches and TLB hold.
//!
//! Only lld has `--symbol-ordering-file`; it is Rust's default linker for
//! x86_64 Linux since 1.90. With an older compiler, another target or a
//! linker of one's own (`-C linker…` in RUSTFLAGS), or with
//! `ONCALL_NO_SYMBOL_ORDER` set, the binary links as it always did. A symbol
//! in the file that no longer exists is ignored, and one missing from it is
//! placed after the listed ones: a stale list costs locality, nothing else.
//!
//! It also has cargo rebuild the binary when a migration is added.

use std::path::Path;
use std::process::Command;

fn main() {
    // `sqlx::migrate!` embeds the migrations at compile time but (on stable)
    // does not tell cargo to look at them again: a new one must rebuild.
    println!("cargo:rerun-if-changed=../migrations");
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-env-changed=ONCALL_NO_SYMBOL_ORDER");
    let order = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("symbol-order.txt");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    if !release
        || !order.exists()
        || std::env::var_os("ONCALL_NO_SYMBOL_ORDER").is_some()
        || !links_with_lld()
    {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=oncall=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bin=oncall=-Wl,--no-warn-symbol-ordering");
}

/// Whether rustc links this build with its own lld, as it does by default
/// for x86_64 Linux from 1.90 on.
fn links_with_lld() -> bool {
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return false;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker") || flags.contains("link-self-contained") {
        return false;
    }
    if std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some() {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-V").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&out.stdout);
    let mut parts = version
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    major > 1 || (major == 1 && minor >= 90)
}
