//! Embeds every bundled provider definition (`src/providers/catalog/*.json`) in the binary, so
//! adding a provider is adding a file; and links the binary with packed relative relocations
//! where the toolchain and C library support them.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

fn main() {
    embed_catalog();
    pack_relocations();
}

/// `-z pack-relative-relocs` (DT_RELR) shrinks the binary's relocation table from ~500 KB to
/// ~10 KB, which every command reads at start-up: `authsome export` measured 0.1 to 0.75 ms
/// faster (interleaved runs on the reference VM). It needs GNU ld >= 2.38 or lld and glibc >=
/// 2.36 where the binary runs, so it is used only when a probe program links and runs with it
/// (native builds only: a cross build cannot run the probe).
fn pack_relocations() {
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    if target != host || !target.ends_with("-linux-gnu") {
        return;
    }
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("relr-probe");
    let source = out.with_extension("c");
    if std::fs::write(&source, "int main(void) { return 0; }\n").is_err() {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let quiet = |cmd: &mut Command| {
        cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|status| status.success())
    };
    let linked = quiet(Command::new(&cc).arg("-o").arg(&out).arg(&source).arg("-Wl,-z,pack-relative-relocs"));
    if linked && quiet(&mut Command::new(&out)) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-env-changed=CC");
}

fn embed_catalog() {
    let dir = Path::new("src/providers/catalog");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("provider catalog directory")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "json").then(|| path.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    let mut out = String::from(
        "/// (name, JSON) of every bundled provider, sorted by name.\npub(crate) static BUNDLED: &[(&str, &str)] = &[\n",
    );
    for name in &names {
        let path = std::fs::canonicalize(dir.join(format!("{name}.json"))).expect("catalog file");
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(out, "    ({name:?}, include_str!({:?})),", path.display().to_string()).unwrap();
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("bundled_providers.rs");
    std::fs::write(dest, out).expect("write bundled_providers.rs");
}
