//! The benchmark harness cannot silently rot: `lifecycle-bench --quick` (tiny counts) against
//! the workspace's shim binary must write every figure and every plot. No timing is asserted.
//!
//! Runs as root (it starts a private containerd and containers, like the integration tests).

use std::{fs, process::Command};

use lifecycle_testsupport::{containerd::shim_binary, require_root};

/// Every plot the report links, in `benchmarks/` beside it.
const PLOTS: [&str; 8] = [
    "e2e.svg",
    "phases.svg",
    "runtime.svg",
    "poststart.svg",
    "grace.svg",
    "memory.svg",
    "concurrent.svg",
    "latency.svg",
];

/// A line of the report for each figure (the summary rows and each section).
const FIGURES: [&str; 14] = [
    "| `ctr run --rm /bin/true`, median ms |",
    "| create+start+wait+delete of a bundle as a command",
    "| shim memory per container at n=1, KiB |",
    "| CPU of 2 idle shims over",
    "| 2 containers started at once, wall ms |",
    "| Start with an exec postStart `/bin/true` minus without",
    "| container exit after the grace deadline",
    "## End to end",
    "### Where the time goes",
    "| Create (connect, mounts, container create) |",
    "## The runtime alone",
    "### Grace deadline accuracy",
    "## Scaling: n containers at once",
    "## Idle CPU",
];

#[test]
fn quick_bench_writes_every_figure_and_plot() {
    require_root();
    let out_dir = tempfile::tempdir().expect("tempdir");
    let report = out_dir.path().join("benchmarks.md");
    let out = Command::new(env!("CARGO_BIN_EXE_lifecycle-bench"))
        .args(["--quick", "--out"])
        .arg(&report)
        .env("LIFECYCLE_SHIM_BIN", shim_binary())
        .output()
        .expect("run lifecycle-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "lifecycle-bench --quick failed ({}):\n{stderr}",
        out.status
    );
    let md = fs::read_to_string(&report).expect("the report was written");
    for figure in FIGURES {
        assert!(md.contains(figure), "no {figure:?} in the report:\n{md}");
    }
    assert!(md.contains("Failures: none."), "{md}");
    // Every figure was measured: no empty sample left a "not measured" or NaN behind.
    assert!(!md.contains("not measured"), "{md}");
    assert!(!md.contains("NaN"), "{md}");
    for plot in PLOTS {
        let path = out_dir.path().join("benchmarks").join(plot);
        let svg = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} was not written: {e}", path.display()));
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{plot} is not an SVG document:\n{svg}"
        );
        assert!(
            svg.contains("cores, kernel"),
            "{plot} does not name the machine"
        );
        assert!(
            md.contains(&format!("(benchmarks/{plot})")),
            "the report does not link {plot}"
        );
    }
    let headline = String::from_utf8_lossy(&out.stdout);
    assert!(headline.contains("ratio"), "headline: {headline}");
}
