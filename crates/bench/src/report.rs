//! The Markdown report and its plots.

use std::{fmt::Write as _, fs, io, path::Path, process::Command};

use crate::{
    measure::{Results, ScalePoint},
    stats::{summarize, Summary},
    svg, Plan, RUNTIMES,
};

/// What the figures were measured on.
pub struct Machine {
    pub cores: usize,
    pub kernel: String,
    pub cgroups: String,
    pub containerd: String,
    pub runc: String,
}

impl Machine {
    pub fn probe() -> Self {
        let first_line = |cmd: &str, args: &[&str]| {
            Command::new(cmd)
                .args(args)
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .and_then(|s| s.lines().next().map(str::to_owned))
                .unwrap_or_else(|| "unknown".into())
        };
        let cgroups = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            "v2 (unified)"
        } else if Path::new("/sys/fs/cgroup/unified").exists() {
            "v1 (hybrid)"
        } else {
            "v1"
        };
        Machine {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            kernel: first_line("uname", &["-r"]),
            cgroups: cgroups.into(),
            containerd: first_line("containerd", &["--version"]),
            runc: first_line("runc", &["--version"]),
        }
    }
}

fn ratio(ours: f64, theirs: f64) -> String {
    if ours.is_finite() && theirs.is_finite() && theirs > 0.0 {
        format!("{:.2}", ours / theirs)
    } else {
        "n/a".into()
    }
}

fn verdict(ours: f64, theirs: f64, target: f64) -> &'static str {
    if !ours.is_finite() || !theirs.is_finite() || theirs <= 0.0 {
        "not measured"
    } else if ours / theirs <= target {
        "met"
    } else {
        "**missed**"
    }
}

/// One line for the terminal and the README.
pub fn headline(results: &Results) -> String {
    let [ours, theirs] = [summarize(&results.e2e[0]), summarize(&results.e2e[1])];
    let mem = results.memory.last();
    format!(
        "ctr run --rm /bin/true: ours {:.1} ms vs runc-v2 {:.1} ms (ratio {}); shim memory per container at n={}: ratio {}",
        ours.median,
        theirs.median,
        ratio(ours.median, theirs.median),
        mem.map(|p| p.n).unwrap_or(0),
        mem.map(|p| ratio(p.values[0], p.values[1])).unwrap_or_else(|| "n/a".into()),
    )
}

pub fn write(plan: &Plan, machine: &Machine, results: &Results) -> io::Result<()> {
    let dir = plan
        .out
        .parent()
        .unwrap_or(Path::new("."))
        .join("benchmarks");
    fs::create_dir_all(&dir)?;
    let e2e = [summarize(&results.e2e[0]), summarize(&results.e2e[1])];

    fs::write(
        dir.join("e2e.svg"),
        svg::strip_plot(
            "ctr run --rm /bin/true (each dot one run, bar = median)",
            "milliseconds",
            &[
                (RUNTIMES[0].label, &results.e2e[0]),
                (RUNTIMES[1].label, &results.e2e[1]),
            ],
        ),
    )?;
    let xs: Vec<f64> = results.memory.iter().map(|p| p.n as f64).collect();
    let curve =
        |points: &[ScalePoint], r: usize| points.iter().map(|p| p.values[r]).collect::<Vec<_>>();
    fs::write(
        dir.join("memory.svg"),
        svg::line_chart(
            "shim memory per running container",
            "running containers",
            "KiB per container",
            &xs,
            &[
                (RUNTIMES[0].label, curve(&results.memory, 0)),
                (RUNTIMES[1].label, curve(&results.memory, 1)),
            ],
        ),
    )?;
    fs::write(
        dir.join("concurrent.svg"),
        svg::line_chart(
            "wall time to start n containers concurrently",
            "containers started at once",
            "milliseconds",
            &xs,
            &[
                (RUNTIMES[0].label, curve(&results.concurrent, 0)),
                (RUNTIMES[1].label, curve(&results.concurrent, 1)),
            ],
        ),
    )?;

    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Benchmarks: containerd-shim-lifecycle-v1 vs containerd-shim-runc-v2\n"
    );
    let _ = writeln!(
        md,
        "Written by `scripts/bench` (`lifecycle-bench`). Both runtimes run in one private containerd in \
         the same run, each measurement alternating between them. `ctr` runs through `nsenter` into the \
         daemon's private mount namespace, which adds the same few milliseconds to both sides.\n"
    );
    let _ = writeln!(
        md,
        "Machine: {} cores, kernel {}, cgroups {}; {}; {}.\n",
        machine.cores, machine.kernel, machine.cgroups, machine.containerd, machine.runc
    );
    let _ = writeln!(md, "## Summary\n");
    let _ = writeln!(
        md,
        "| figure | lifecycle | runc-v2 | ratio | target | |\n|---|---|---|---|---|---|"
    );
    row(
        &mut md,
        "`ctr run --rm /bin/true`, median ms",
        e2e[0].median,
        e2e[1].median,
        "<= 0.5",
        verdict(e2e[0].median, e2e[1].median, 0.5),
    );
    if let Some(p) = results.memory.last() {
        row(
            &mut md,
            &format!("shim memory per container at n={}, KiB", p.n),
            p.values[0],
            p.values[1],
            "<= 0.3",
            verdict(p.values[0], p.values[1], 0.3),
        );
    }
    row(
        &mut md,
        &format!(
            "CPU of {} idle shims over {:?}, ms",
            results.idle_n, plan.idle
        ),
        results.idle_cpu[0],
        results.idle_cpu[1],
        "< 1",
        idle_verdict(results.idle_cpu),
    );
    if let Some(p) = results.concurrent.last() {
        row(
            &mut md,
            &format!("{} containers started at once, wall ms", p.n),
            p.values[0],
            p.values[1],
            "",
            "",
        );
    }
    let _ = writeln!(
        md,
        "\nFailures: {}.\n",
        if results.failures.is_empty() {
            "none".into()
        } else {
            results.failures.len().to_string()
        }
    );
    for f in &results.failures {
        let _ = writeln!(md, "- `{f}`");
    }

    let _ = writeln!(md, "## End to end: `ctr run --rm <rootfs> /bin/true`\n");
    let _ = writeln!(
        md,
        "| runtime | runs | median ms | min | max |\n|---|---|---|---|---|"
    );
    for (r, s) in e2e.iter().enumerate() {
        summary_row(&mut md, RUNTIMES[r].label, s);
    }
    let _ = writeln!(md, "\n![end to end latency](benchmarks/e2e.svg)\n");

    let _ = writeln!(md, "## Scaling: n containers at once\n");
    let _ = writeln!(
        md,
        "Memory is the PSS of every shim process serving the daemon plus the size of every memfd they \
         hold (a sealed copy of the binary counts in full), divided by n.\n"
    );
    let _ = writeln!(
        md,
        "| n | start wall ms (lifecycle) | start wall ms (runc-v2) | ratio | KiB/container (lifecycle) | KiB/container (runc-v2) | ratio |\n|---|---|---|---|---|---|---|"
    );
    for (w, m) in results.concurrent.iter().zip(&results.memory) {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} | {} | {:.0} | {:.0} | {} |",
            w.n,
            w.values[0],
            w.values[1],
            ratio(w.values[0], w.values[1]),
            m.values[0],
            m.values[1],
            ratio(m.values[0], m.values[1])
        );
    }
    let _ = writeln!(md, "\n![memory per container](benchmarks/memory.svg)\n");
    let _ = writeln!(md, "![concurrent start](benchmarks/concurrent.svg)\n");
    fs::write(&plan.out, md)
}

fn idle_verdict([ours, theirs]: [f64; 2]) -> &'static str {
    if ours.is_nan() || theirs.is_nan() {
        "not measured"
    } else if ours < theirs || ours == 0.0 {
        "met"
    } else {
        "**missed**"
    }
}

fn row(md: &mut String, what: &str, ours: f64, theirs: f64, target: &str, verdict: &str) {
    let _ = writeln!(
        md,
        "| {what} | {ours:.1} | {theirs:.1} | {} | {target} | {verdict} |",
        ratio(ours, theirs)
    );
}

fn summary_row(md: &mut String, label: &str, s: &Summary) {
    let _ = writeln!(
        md,
        "| {label} | {} | {:.1} | {:.1} | {:.1} |",
        s.n, s.median, s.min, s.max
    );
}
