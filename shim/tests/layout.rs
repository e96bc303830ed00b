//! The code layout (`shim/hot-symbols.txt`, docs/shim.md) names functions by their exact
//! symbols, whose hashes cover the features of each crate and of its dependencies. A release
//! build of the shim alone (`scripts/demo`, `scripts/hot-symbols`) and of the whole workspace
//! (`cargo build --release`, `scripts/bench` with the bench) must therefore resolve the same
//! features for every crate the shim links, or the list matches nothing in one of them.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Features of every unit the shim's binary depends on, for a release build of `selection`.
fn shim_units(selection: &[&str]) -> BTreeMap<String, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let out = Command::new(&cargo)
        .current_dir(root)
        // --unit-graph is unstable: it prints what would be built and builds nothing.
        .env("RUSTC_BOOTSTRAP", "1")
        // Not the target directory the running `cargo test` holds locked.
        .env("CARGO_TARGET_DIR", scratch.path())
        .args([
            "build",
            "--release",
            "--locked",
            "--unit-graph",
            "-Z",
            "unstable-options",
        ])
        .args(selection)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(
        out.status.success(),
        "cargo build --unit-graph {selection:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let graph: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let units = graph["units"].as_array().unwrap();
    let mut todo: Vec<usize> = units
        .iter()
        .enumerate()
        .filter(|(_, u)| {
            u["target"]["name"] == "containerd-shim-lifecycle-v1"
                && u["target"]["kind"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k == "bin")
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        todo.len(),
        1,
        "one shim binary unit in the graph of {selection:?}"
    );
    let mut seen = BTreeMap::new();
    while let Some(i) = todo.pop() {
        let u = &units[i];
        let key = format!("{} {} {}", u["pkg_id"], u["target"]["name"], u["mode"]);
        if seen.insert(key, u["features"].to_string()).is_none() {
            todo.extend(
                u["dependencies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["index"].as_u64().unwrap() as usize),
            );
        }
    }
    seen
}

#[test]
fn shim_alone_and_workspace_resolve_the_same_features() {
    let alone = shim_units(&["-p", "containerd-shim-lifecycle-v1"]);
    let workspace = shim_units(&["--workspace"]);
    let differ: Vec<String> = workspace
        .iter()
        .filter(|(k, v)| alone.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: workspace {v}, shim alone {:?}", alone.get(k)))
        .chain(
            alone
                .keys()
                .filter(|k| !workspace.contains_key(*k))
                .map(|k| format!("{k}: only when the shim is built alone")),
        )
        .collect();
    assert!(
        differ.is_empty(),
        "building the shim alone and the workspace resolve different features, so the symbol \
         names in shim/hot-symbols.txt cannot match both builds; name these features among the \
         shim's dependencies (shim/Cargo.toml) and run scripts/hot-symbols:\n{}",
        differ.join("\n")
    );
    assert!(
        alone.len() > 50,
        "the shim's dependency graph looks too small: {alone:?}"
    );
}
