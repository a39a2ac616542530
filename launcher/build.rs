//! Embeds every bundled provider definition (`src/providers/catalog/*.json`) in the binary, so
//! adding a provider is adding a file.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
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
        "/// (name, JSON) of every bundled provider, sorted by name.\npub static BUNDLED: &[(&str, &str)] = &[\n",
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
