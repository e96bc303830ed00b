//! Minimal SVG plots: a strip plot of latency distributions and a line chart of scaling
//! curves. Hand-written SVG keeps the benchmark free of a plotting dependency's build time.

use std::fmt::Write;

const W: f64 = 640.0;
const H: f64 = 300.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 45.0;
/// One colour per series, ours first.
const COLOURS: [&str; 2] = ["#1f77b4", "#d62728"];

fn header(title: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{x}" y="18" text-anchor="middle" font-size="14">{title}</text>
"#,
        x = W / 2.0
    );
    s
}

fn nice_max(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * mag >= v {
            return step * mag;
        }
    }
    10.0 * mag
}

fn x_axis(s: &mut String, max: f64, label: &str) {
    let y = H - BOTTOM;
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="black"/>"#,
        W - RIGHT
    );
    for i in 0..=5 {
        let v = max * i as f64 / 5.0;
        let x = LEFT + (W - LEFT - RIGHT) * i as f64 / 5.0;
        let _ = writeln!(
            s,
            r#"<line x1="{x}" y1="{y}" x2="{x}" y2="{}" stroke="black"/>"#,
            y + 4.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#,
            y + 17.0,
            fmt(v)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{label}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 8.0
    );
}

fn fmt(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// One row of dots per series, with a tick at the median.
pub fn strip_plot(title: &str, unit: &str, series: &[(&str, &[f64])]) -> String {
    let mut s = header(title);
    let max = nice_max(
        series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(0.0, f64::max),
    );
    x_axis(&mut s, max, unit);
    let rows = series.len().max(1) as f64;
    let band = (H - TOP - BOTTOM) / rows;
    for (i, (name, values)) in series.iter().enumerate() {
        let y = TOP + band * (i as f64 + 0.5);
        let colour = COLOURS[i % COLOURS.len()];
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{name}</text>"#,
            LEFT - 8.0,
            y + 4.0
        );
        for (j, v) in values.iter().enumerate() {
            let x = LEFT + (W - LEFT - RIGHT) * v / max;
            // Spread the dots vertically a little so equal values stay visible.
            let jitter = ((j * 7919) % 17) as f64 - 8.0;
            let _ = writeln!(
                s,
                r#"<circle cx="{x:.1}" cy="{:.1}" r="3" fill="{colour}" fill-opacity="0.5"/>"#,
                y + jitter
            );
        }
        let median = crate::stats::summarize(values).median;
        if median.is_finite() {
            let x = LEFT + (W - LEFT - RIGHT) * median / max;
            let _ = writeln!(
                s,
                r#"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="black" stroke-width="2"/>"#,
                y - band * 0.35,
                y + band * 0.35
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// A line per series over the container counts `xs`.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    xs: &[f64],
    series: &[(&str, Vec<f64>)],
) -> String {
    let mut s = header(title);
    let x_max = nice_max(xs.iter().copied().fold(0.0, f64::max));
    let y_max = nice_max(
        series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(0.0, f64::max),
    );
    x_axis(&mut s, x_max, x_label);
    let plot_h = H - TOP - BOTTOM;
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="black"/>"#,
        H - BOTTOM
    );
    for i in 0..=4 {
        let v = y_max * i as f64 / 4.0;
        let y = H - BOTTOM - plot_h * i as f64 / 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            fmt(v)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="14" y="{y}" text-anchor="middle" transform="rotate(-90 14 {y})">{y_label}</text>"#,
        y = TOP + plot_h / 2.0
    );
    for (i, (name, ys)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = xs
            .iter()
            .zip(ys)
            .map(|(x, y)| {
                format!(
                    "{:.1},{:.1}",
                    LEFT + (W - LEFT - RIGHT) * x / x_max,
                    H - BOTTOM - plot_h * y / y_max
                )
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            points.join(" ")
        );
        for p in &points {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(s, r#"<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>"#);
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" fill="{colour}">{name}</text>"#,
            LEFT + 10.0,
            TOP + 14.0 + 16.0 * i as f64
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Colours of the stacked phases, in order.
const PHASE_COLOURS: [&str; 8] = [
    "#9e9e9e", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
];

/// One horizontal bar per row (a runtime), stacked from `segments` (a value per phase), with
/// a legend of `phases` below.
pub fn stacked_bars(title: &str, unit: &str, phases: &[&str], rows: &[(&str, Vec<f64>)]) -> String {
    let legend_rows = phases.len().div_ceil(2) as f64;
    let height = H + 18.0 * legend_rows;
    let mut s = header(title).replacen(
        &format!("height=\"{H}\""),
        &format!("height=\"{height}\""),
        1,
    );
    let max = nice_max(
        rows.iter()
            .map(|(_, v)| v.iter().filter(|x| x.is_finite()).sum::<f64>())
            .fold(0.0, f64::max),
    );
    x_axis(&mut s, max, unit);
    let band = (H - TOP - BOTTOM) / rows.len().max(1) as f64;
    let scale = (W - LEFT - RIGHT) / max;
    for (i, (name, values)) in rows.iter().enumerate() {
        let y = TOP + band * i as f64 + band * 0.2;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{name}</text>"#,
            LEFT - 8.0,
            y + band * 0.3 + 4.0
        );
        let mut x = LEFT;
        for (k, v) in values.iter().enumerate() {
            if !v.is_finite() || *v <= 0.0 {
                continue;
            }
            let w = v * scale;
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{}"><title>{}: {v:.1} {unit}</title></rect>"#,
                band * 0.6,
                PHASE_COLOURS[k % PHASE_COLOURS.len()],
                phases.get(k).copied().unwrap_or("")
            );
            x += w;
        }
    }
    for (k, phase) in phases.iter().enumerate() {
        let x = 20.0 + (k % 2) as f64 * (W / 2.0);
        let y = H + 4.0 + 18.0 * (k / 2) as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="{y}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            PHASE_COLOURS[k % PHASE_COLOURS.len()],
            x + 18.0,
            y + 10.0,
            escape(phase)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('`', "")
}
