//! The Markdown report and its plots.

use std::{fmt::Write as _, fs, io, path::Path, process::Command};

use crate::{
    hooks,
    measure::{Results, ScalePoint},
    phases::PHASES,
    runtime_cmd,
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
    /// /proc/loadavg's three averages.
    pub load: String,
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
            load: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".into()),
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
    let rt = [
        summarize(&results.runtime.total[0]),
        summarize(&results.runtime.total[1]),
    ];
    let mem = results.memory.last();
    let ps = post_start_added(results);
    format!(
        "ctr run --rm /bin/true: ours {:.1} ms vs runc-v2 {:.1} ms (ratio {}); runtime as a command vs runc run: ratio {}; \
         shim memory per container at n={}: ratio {}; postStart adds {:.1} ms to Start; exit {:.1} ms after the grace deadline (median)",
        ours.median,
        theirs.median,
        ratio(ours.median, theirs.median),
        ratio(rt[0].median, rt[1].median),
        mem.map(|p| p.n).unwrap_or(0),
        mem.map(|p| ratio(p.values[0], p.values[1])).unwrap_or_else(|| "n/a".into()),
        ps,
        summarize(&results.hooks.grace_late).median,
    )
}

/// Median Start with the hook minus median Start without, ms.
fn post_start_added(results: &Results) -> f64 {
    summarize(&results.hooks.start[1]).median - summarize(&results.hooks.start[0]).median
}

/// Adds a line at the bottom of a plot (the machine it was measured on).
fn with_caption(svg: String, caption: &str) -> String {
    let Some(at) = svg.find("height=\"") else {
        return svg;
    };
    let rest = &svg[at + 8..];
    let Some(end) = rest.find('"') else {
        return svg;
    };
    let Ok(h) = rest[..end].parse::<f64>() else {
        return svg;
    };
    let caption = caption.replace('&', "&amp;").replace('<', "&lt;");
    let mut out = format!("{}height=\"{}\"{}", &svg[..at], h + 18.0, &rest[end + 1..]);
    let body_end = out.rfind("</svg>").unwrap_or(out.len());
    out.insert_str(
        body_end,
        &format!(
            "<text x=\"8\" y=\"{}\" font-size=\"10\" fill=\"#555\">{caption}</text>\n",
            h + 12.0
        ),
    );
    out
}

pub fn write(plan: &Plan, machine: &Machine, results: &Results) -> io::Result<()> {
    let dir = plan
        .out
        .parent()
        .unwrap_or(Path::new("."))
        .join("benchmarks");
    fs::create_dir_all(&dir)?;
    let machine_line = format!(
        "{} cores, kernel {}, cgroups {}; {}; {}",
        machine.cores, machine.kernel, machine.cgroups, machine.containerd, machine.runc
    );
    let plot =
        |name: &str, svg: String| fs::write(dir.join(name), with_caption(svg, &machine_line));
    let labels = [RUNTIMES[0].label, RUNTIMES[1].label];
    let e2e = [summarize(&results.e2e[0]), summarize(&results.e2e[1])];
    let rt = [
        summarize(&results.runtime.total[0]),
        summarize(&results.runtime.total[1]),
    ];
    let ps = [
        summarize(&results.hooks.start[0]),
        summarize(&results.hooks.start[1]),
    ];
    let ps_run = [
        summarize(&results.hooks.run_d[0]),
        summarize(&results.hooks.run_d[1]),
    ];
    let grace = summarize(&results.hooks.grace_late);
    let phase_medians: Vec<Vec<f64>> = (0..2)
        .map(|r| {
            (0..PHASES.len())
                .map(|k| {
                    let v: Vec<f64> = results.phases.runs[r].iter().map(|p| p[k]).collect();
                    summarize(&v).median
                })
                .collect()
        })
        .collect();

    plot(
        "e2e.svg",
        svg::strip_plot(
            "ctr run --rm /bin/true (each dot one run, bar = median)",
            "milliseconds",
            &[(labels[0], &results.e2e[0]), (labels[1], &results.e2e[1])],
        ),
    )?;
    let phase_names: Vec<&str> = PHASES.iter().map(|(n, _)| *n).collect();
    plot(
        "phases.svg",
        svg::stacked_bars(
            "ctr run --rm /bin/true by phase (medians, containerd debug log)",
            "ms",
            &phase_names,
            &[
                (labels[0], phase_medians[0].clone()),
                (labels[1], phase_medians[1].clone()),
            ],
        ),
    )?;
    plot(
        "runtime.svg",
        svg::strip_plot(
            "create+start+wait+delete of /bin/true as a command",
            "milliseconds",
            &[
                ("lifecycle-runtime", &results.runtime.total[0]),
                ("runc run", &results.runtime.total[1]),
            ],
        ),
    )?;
    plot(
        "poststart.svg",
        svg::strip_plot(
            "shim Start RPC, ours: no hook vs exec postStart /bin/true",
            "milliseconds",
            &[
                ("no hook", &results.hooks.start[0]),
                ("postStart", &results.hooks.start[1]),
            ],
        ),
    )?;
    plot(
        "grace.svg",
        svg::strip_plot(
            "container exit after the grace deadline (SIGTERM ignored)",
            "milliseconds after Kill + grace",
            &[("lifecycle", &results.hooks.grace_late)],
        ),
    )?;
    let xs: Vec<f64> = results.memory.iter().map(|p| p.n as f64).collect();
    let curve =
        |points: &[ScalePoint], r: usize| points.iter().map(|p| p.values[r]).collect::<Vec<_>>();
    let curves =
        |points: &[ScalePoint]| vec![(labels[0], curve(points, 0)), (labels[1], curve(points, 1))];
    plot(
        "memory.svg",
        svg::line_chart(
            "shim memory per running container",
            "running containers",
            "KiB per container",
            &xs,
            &curves(&results.memory),
        ),
    )?;
    plot(
        "concurrent.svg",
        svg::line_chart(
            "wall time to start n containers concurrently",
            "containers started at once",
            "milliseconds",
            &xs,
            &curves(&results.concurrent),
        ),
    )?;
    plot(
        "latency.svg",
        svg::line_chart(
            "median ctr run -d latency of one container among n started at once",
            "containers started at once",
            "milliseconds",
            &xs,
            &curves(&results.latency),
        ),
    )?;

    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Benchmarks: containerd-shim-lifecycle-v1 vs containerd-shim-runc-v2\n"
    );
    let _ = writeln!(
        md,
        "Written by `scripts/bench` (`lifecycle-bench`, release build). Both runtimes run in one private \
         containerd in the same run, each measurement alternating between them (and which goes first), so \
         drift of the machine lands on both. `ctr` runs through `nsenter` into the daemon's private mount \
         namespace, which adds the same few milliseconds to both sides.\n"
    );
    let _ = writeln!(
        md,
        "Machine (every figure and plot below): {machine_line}. Load average when the report was \
         written: {}.\n",
        machine.load
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
    row(
        &mut md,
        "create+start+wait+delete of a bundle as a command (ours vs `runc run`), median ms",
        rt[0].median,
        rt[1].median,
        "<= 0.5",
        verdict(rt[0].median, rt[1].median, 0.5),
    );
    for p in &results.memory {
        if p.n == 1 || p.n == 10 || Some(p.n) == results.memory.last().map(|l| l.n) {
            row(
                &mut md,
                &format!("shim memory per container at n={}, KiB", p.n),
                p.values[0],
                p.values[1],
                "<= 0.3",
                verdict(p.values[0], p.values[1], 0.3),
            );
        }
    }
    row(
        &mut md,
        &format!(
            "CPU of {} idle shims over {:?}, ms",
            results.idle_n, plan.idle
        ),
        results.idle_cpu[0],
        results.idle_cpu[1],
        "< runc-v2",
        idle_verdict(results.idle_cpu),
    );
    if let Some(p) = results.concurrent.last() {
        let failed = results.failures.iter().any(|f| f.contains("scale-"));
        row(
            &mut md,
            &format!("{} containers started at once, wall ms", p.n),
            p.values[0],
            p.values[1],
            "no failures",
            if failed { "**missed**" } else { "met" },
        );
    }
    let added = post_start_added(results);
    let _ = writeln!(
        md,
        "| Start with an exec postStart `/bin/true` minus without, median ms | +{added:.1} ({:.1} vs {:.1}) | | | <= +5 ms | {} |",
        ps[1].median,
        ps[0].median,
        abs_verdict(added, 5.0)
    );
    let _ = writeln!(
        md,
        "| container exit after the grace deadline, median (max) ms | {:.1} ({:.1}) | | | <= 50 ms | {} |",
        grace.median,
        grace.max,
        abs_verdict(grace.max.max(grace.median), 50.0)
    );
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
    let _ = writeln!(
        md,
        "Where the costs are and what would close a missed target, from profiles (hand-written, \
         not regenerated): [benchmarks/notes.md](benchmarks/notes.md).\n"
    );

    let _ = writeln!(md, "## End to end: `ctr run --rm <rootfs> /bin/true`\n");
    let _ = writeln!(
        md,
        "Measured by the bench from spawning `ctr` to its exit; containerd at log level info.\n"
    );
    let _ = writeln!(
        md,
        "| runtime | runs | median ms | min | max |\n|---|---|---|---|---|"
    );
    for (r, s) in e2e.iter().enumerate() {
        summary_row(&mut md, labels[r], s);
    }
    let _ = writeln!(md, "\n![end to end latency](benchmarks/e2e.svg)\n");

    let _ = writeln!(md, "### Where the time goes\n");
    let _ = writeln!(
        md,
        "A second pass with containerd at log level debug ({} and {} complete runs, interleaved): each \
         phase ends at a line of containerd's log (its own `event published` / `event forwarded` \
         lines, and the shim's first log line once it serves: ours `serving tasks`, runc-v2 \
         `starting signal loop`, both copied into containerd's log with the shim's timestamp). \
         Events reach containerd a little after the RPC that caused them returns, so a phase's \
         boundary can be off by about a millisecond. Medians, ms:\n",
        results.phases.runs[0].len(),
        results.phases.runs[1].len()
    );
    let _ = writeln!(
        md,
        "| phase (ends at) | lifecycle | runc-v2 | difference |\n|---|---|---|---|"
    );
    for (k, (name, _)) in PHASES.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {name} | {:.1} | {:.1} | {:+.1} |",
            phase_medians[0][k],
            phase_medians[1][k],
            phase_medians[0][k] - phase_medians[1][k]
        );
    }
    let totals: Vec<f64> = (0..2)
        .map(|r| {
            let t: Vec<f64> = results.phases.runs[r]
                .iter()
                .map(|p| p.iter().sum())
                .collect();
            summarize(&t).median
        })
        .collect();
    let _ = writeln!(
        md,
        "| whole run (median of the sums) | {:.1} | {:.1} | {:+.1} |",
        totals[0],
        totals[1],
        totals[0] - totals[1]
    );
    if results.phases.incomplete.iter().any(|n| *n > 0) {
        let _ = writeln!(
            md,
            "\nRuns with a marker missing from the log (left out): lifecycle {}, runc-v2 {}.",
            results.phases.incomplete[0], results.phases.incomplete[1]
        );
    }
    let _ = writeln!(md, "\n![phases](benchmarks/phases.svg)\n");

    let _ = writeln!(md, "## The runtime alone: a bundle run as a command\n");
    let _ = writeln!(
        md,
        "`lifecycle-bench __run-bundle` (the runtime library in a fresh process, its own helper \
         executable, as the shim is) against `runc run` of the same busybox `/bin/true` bundle, \
         runc's default spec: each creates, starts, waits for and deletes the container, timed \
         from spawn to exit, after one warm-up run each.\n"
    );
    let _ = writeln!(
        md,
        "| command | runs | median ms | min | max |\n|---|---|---|---|---|"
    );
    summary_row(&mut md, "lifecycle-runtime", &rt[0]);
    summary_row(&mut md, "runc run", &rt[1]);
    let inner: Vec<String> = (0..4)
        .map(|k| {
            let v: Vec<f64> = results.runtime.phases.iter().map(|p| p[k]).collect();
            format!("{} {:.1}", runtime_cmd::PHASES[k], summarize(&v).median)
        })
        .collect();
    let _ = writeln!(
        md,
        "\nInside our command (medians, ms): {}; the rest is the process's own start and exit.\n",
        inner.join(", ")
    );
    let _ = writeln!(md, "![runtime as a command](benchmarks/runtime.svg)\n");

    let _ = writeln!(md, "## Lifecycle hooks (ours only)\n");
    let _ = writeln!(md, "### Start with a trivial exec postStart\n");
    let _ = writeln!(
        md,
        "`ctr run -d` of a sleeping container with `--annotation \
         lifecycle.shim/post-start={{\"exec\":{{\"command\":[\"/bin/true\"]}}}}` and without, \
         interleaved; the Start RPC's duration is the shim's own (`Start <id> took` in its debug log): \
         with the hook it includes entering the container and running `/bin/true` to its exit.\n"
    );
    let _ = writeln!(
        md,
        "| | runs | Start median ms | min | max | `ctr run -d` median ms |\n|---|---|---|---|---|---|"
    );
    for (k, name) in ["no hook", "postStart /bin/true"].iter().enumerate() {
        let _ = writeln!(
            md,
            "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.1} |",
            ps[k].n, ps[k].median, ps[k].min, ps[k].max, ps_run[k].median
        );
    }
    let _ = writeln!(
        md,
        "\nAdded by the hook: {added:.2} ms (target at most 5 ms: {}).\n",
        abs_verdict(added, 5.0)
    );
    let _ = writeln!(md, "![postStart](benchmarks/poststart.svg)\n");
    let _ = writeln!(md, "### Grace deadline accuracy\n");
    let _ = writeln!(
        md,
        "A container whose entrypoint ignores SIGTERM (`/bin/sleep` as pid 1, which has no handler) with \
         `lifecycle.shim/termination-grace-period-seconds={g}` and a preStop `{{\"sleep\":{{\"seconds\":0}}}}`, \
         stopped with `ctr task kill` (SIGTERM). The deadline is the Kill's arrival plus {g} s: the Kill's \
         arrival is the preStop record's `started_unix_ms` (the hook starts as the Kill arrives; millisecond \
         resolution, so a sample can read up to 1 ms early or late); the exit is the `exited_at` of the \
         TaskExit event (the time the shim's reaper collected the SIGKILLed init), read with `ctr events`. \
         With {g} s of grace, more than 2 s remain when SIGTERM is sent, so the shim does not extend the \
         deadline.\n",
        g = hooks::GRACE_SECONDS
    );
    let _ = writeln!(
        md,
        "| runs | median ms after the deadline | min | max | target |\n|---|---|---|---|---|"
    );
    let _ = writeln!(
        md,
        "| {} | {:.1} | {:.1} | {:.1} | <= 50 ms: {} |",
        grace.n,
        grace.median,
        grace.min,
        grace.max,
        abs_verdict(grace.max.max(grace.median), 50.0)
    );
    let _ = writeln!(md, "\n![grace deadline](benchmarks/grace.svg)\n");

    let _ = writeln!(md, "## Scaling: n containers at once\n");
    let _ = writeln!(
        md,
        "n `ctr run -d ... /bin/sleep` started at the same time (one thread each). Wall is until the \
         last `ctr` returned; latency is the median of the n `ctr` durations. Memory is the PSS of \
         every shim process serving the daemon plus the size of every memfd they hold (a sealed copy \
         of the binary counts in full), divided by n, once all n are RUNNING.\n"
    );
    let _ = writeln!(
        md,
        "| n | wall ms (lifecycle) | wall ms (runc-v2) | latency ms (lifecycle) | latency ms (runc-v2) | latency ratio | KiB/container (lifecycle) | KiB/container (runc-v2) | memory ratio |\n|---|---|---|---|---|---|---|---|---|"
    );
    for ((w, l), m) in results
        .concurrent
        .iter()
        .zip(&results.latency)
        .zip(&results.memory)
    {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.0} | {:.0} | {} |",
            w.n,
            w.values[0],
            w.values[1],
            l.values[0],
            l.values[1],
            ratio(l.values[0], l.values[1]),
            m.values[0],
            m.values[1],
            ratio(m.values[0], m.values[1])
        );
    }
    let _ = writeln!(md, "\n![memory per container](benchmarks/memory.svg)\n");
    let _ = writeln!(md, "![concurrent start](benchmarks/concurrent.svg)\n");
    let _ = writeln!(md, "![per-container latency](benchmarks/latency.svg)\n");
    let _ = writeln!(md, "## Idle CPU\n");
    let _ = writeln!(
        md,
        "utime + stime of every shim process of the {n} sleeping containers of the largest scale, over \
         {:?}: lifecycle {:.0} ms, runc-v2 {:.0} ms ({}; the clock tick is 10 ms).",
        plan.idle,
        results.idle_cpu[0],
        results.idle_cpu[1],
        idle_verdict(results.idle_cpu),
        n = results.idle_n
    );
    fs::write(&plan.out, md)
}

fn abs_verdict(value: f64, limit: f64) -> &'static str {
    if !value.is_finite() {
        "not measured"
    } else if value <= limit {
        "met"
    } else {
        "**missed**"
    }
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
