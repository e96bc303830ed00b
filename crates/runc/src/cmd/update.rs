//! update: new resource limits, as `LinuxResources` JSON (`--resources FILE`, `-` for stdin,
//! what containerd-shim-runc-v2 sends) or runc's individual flags.

use std::io::Read;

use lifecycle_runtime::Status;
use oci_spec::runtime::LinuxResources;
use serde_json::json;

use crate::{
    args::{self, opt, Flag},
    one_id, Fail, Global, Res,
};

/// (flag, JSON path in LinuxResources, kind)
const FIELDS: &[(&str, &[&str], Kind)] = &[
    ("memory", &["memory", "limit"], Kind::Bytes),
    (
        "memory-reservation",
        &["memory", "reservation"],
        Kind::Bytes,
    ),
    ("memory-swap", &["memory", "swap"], Kind::Bytes),
    ("kernel-memory", &["memory", "kernel"], Kind::Bytes),
    ("kernel-memory-tcp", &["memory", "kernelTCP"], Kind::Bytes),
    ("cpu-shares", &["cpu", "shares"], Kind::Int),
    ("cpu-quota", &["cpu", "quota"], Kind::Int),
    ("cpu-period", &["cpu", "period"], Kind::Int),
    ("cpu-rt-period", &["cpu", "realtimePeriod"], Kind::Int),
    ("cpu-rt-runtime", &["cpu", "realtimeRuntime"], Kind::Int),
    ("cpuset-cpus", &["cpu", "cpus"], Kind::Str),
    ("cpuset-mems", &["cpu", "mems"], Kind::Str),
    ("pids-limit", &["pids", "limit"], Kind::Int),
    ("blkio-weight", &["blockIO", "weight"], Kind::Int),
];

#[derive(Clone, Copy)]
enum Kind {
    Bytes,
    Int,
    Str,
}

const FLAGS: &[Flag] = &[
    opt(&["resources", "r"]),
    opt(&["memory"]),
    opt(&["memory-reservation"]),
    opt(&["memory-swap"]),
    opt(&["kernel-memory"]),
    opt(&["kernel-memory-tcp"]),
    opt(&["cpu-shares"]),
    opt(&["cpu-quota"]),
    opt(&["cpu-period"]),
    opt(&["cpu-rt-period"]),
    opt(&["cpu-rt-runtime"]),
    opt(&["cpuset-cpus"]),
    opt(&["cpuset-mems"]),
    opt(&["pids-limit"]),
    opt(&["blkio-weight"]),
    opt(&["l3-cache-schema"]),
    opt(&["mem-bw-schema"]),
];

pub fn update(g: &Global, argv: &[String]) -> Res {
    let p = args::parse(argv, FLAGS, true).map_err(Fail::new)?;
    let id = one_id("update", &p.args)?;
    for f in ["l3-cache-schema", "mem-bw-schema"] {
        if p.get(f).is_some() {
            return Err(Fail::new(format!("--{f} (Intel RDT) is not supported")));
        }
    }
    let c = g.root.load(id)?;
    if c.status() == Status::Stopped {
        return Err(Fail::new("container not running"));
    }
    let res: LinuxResources = match p.get("resources") {
        Some(src) => {
            let mut data = Vec::new();
            let read = if src == "-" {
                std::io::stdin().read_to_end(&mut data).map(|_| ())
            } else {
                std::fs::read(src).map(|d| data = d)
            };
            read.map_err(|e| Fail::new(format!("read resources {src}: {e}")))?;
            serde_json::from_slice(&data)
                .map_err(|e| Fail::new(format!("decode resources: {e}")))?
        }
        None => {
            let mut v = json!({});
            for (flag, path, kind) in FIELDS {
                let Some(raw) = p.get(flag) else { continue };
                let val = match kind {
                    Kind::Str => json!(raw),
                    Kind::Int => json!(raw
                        .parse::<i64>()
                        .map_err(|_| Fail::new(format!("invalid value for {flag}: {raw}")))?),
                    Kind::Bytes => json!(parse_bytes(raw)
                        .ok_or_else(|| Fail::new(format!("invalid value for {flag}: {raw}")))?),
                };
                let mut at = &mut v;
                for (i, k) in path.iter().enumerate() {
                    if i + 1 == path.len() {
                        at[*k] = val.clone();
                    } else {
                        if at.get(*k).is_none() {
                            at[*k] = json!({});
                        }
                        at = &mut at[*k];
                    }
                }
            }
            if v == json!({}) {
                return Err(Fail::new(
                    "update needs --resources or at least one resource flag",
                ));
            }
            serde_json::from_value::<LinuxResources>(v)
                .map_err(|e| Fail::new(format!("resources: {e}")))?
        }
    };
    c.update(&res).map_err(Fail::from)
}

/// docker's `units.RAMInBytes`: a number with an optional binary unit (`k`, `m`, `g`, `t`,
/// `p`, optionally followed by `b` or `ib`, any case); `-1` is unlimited.
fn parse_bytes(s: &str) -> Option<i64> {
    if s == "-1" {
        return Some(-1);
    }
    let lower = s.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(split);
    let n: f64 = num.parse().ok()?;
    let unit = unit.trim_end_matches("ib").trim_end_matches('b');
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return None,
    };
    Some((n * mult) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_as_docker_units() {
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("10m"), Some(10 << 20));
        assert_eq!(parse_bytes("1G"), Some(1 << 30));
        assert_eq!(parse_bytes("512KiB"), Some(512 << 10));
        assert_eq!(parse_bytes("-1"), Some(-1));
        assert_eq!(parse_bytes("lots"), None);
    }
}
