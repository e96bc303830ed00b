//! state, list, ps, features, spec.

use std::io::Write;

use serde::Serialize;
use serde_json::{json, Value};

use crate::{
    args::{self, flag, opt},
    one_id,
    store::{self, StateDoc},
    Fail, Global, Res,
};

/// The runtime-spec versions the library reads: from 1.0.0 to the version of the oci-spec
/// types it parses with.
pub const OCI_VERSION_MIN: &str = "1.0.0";
pub const OCI_VERSION_MAX: &str = oci_spec::runtime::VERSION;

fn print_json<T: Serialize>(v: &T, indent: &[u8], newline: bool) -> Res {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(indent);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    v.serialize(&mut ser)
        .map_err(|e| Fail::new(format!("encode JSON: {e}")))?;
    if newline {
        out.push(b'\n');
    }
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| Fail::new(format!("write stdout: {e}")))
}

/// `state`: runc prints the document indented by two spaces, without a final newline.
pub fn state(g: &Global, argv: &[String]) -> Res {
    let p = args::parse(argv, &[], true).map_err(Fail::new)?;
    let id = one_id("state", &p.args)?;
    let c = g.root.load(id)?;
    print_json(&StateDoc::of(&c, &g.root.dir(id)), b"  ", false)
}

pub fn list(g: &Global, argv: &[String]) -> Res {
    let p = args::parse(argv, &[opt(&["format", "f"]), flag(&["quiet", "q"])], true)
        .map_err(Fail::new)?;
    let mut docs = Vec::new();
    for id in g.root.ids() {
        let dir = g.root.dir(&id);
        // A container deleted meanwhile is skipped, as runc does.
        let Ok(c) = lifecycle_runtime::Container::load(&dir) else {
            continue;
        };
        let mut d = StateDoc::of(&c, &dir);
        d.owner = store::owner_of(&dir);
        docs.push(d);
    }
    if p.is("quiet") {
        for d in &docs {
            println!("{}", d.id);
        }
        return Ok(());
    }
    match p.get("format").unwrap_or("table") {
        "json" => {
            // runc encodes a nil slice: `null` when there is no container.
            let line = if docs.is_empty() {
                "null".to_owned()
            } else {
                serde_json::to_string(&docs).unwrap_or_default()
            };
            println!("{line}");
            Ok(())
        }
        "table" => {
            let mut rows =
                vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(str::to_owned)];
            for d in &docs {
                rows.push([
                    d.id.clone(),
                    d.pid.to_string(),
                    d.status.to_owned(),
                    d.bundle.clone(),
                    d.created.clone(),
                    d.owner.clone(),
                ]);
            }
            print!("{}", table(&rows));
            Ok(())
        }
        other => Err(Fail::new(format!("invalid format option {other:?}"))),
    }
}

/// Go's tabwriter as runc configures it (min width 12, padding 3): every column but the last
/// padded to the widest cell plus 3, at least 12.
fn table(rows: &[[String; 6]]) -> String {
    let mut widths = [0usize; 6];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count() + 3).max(12);
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            out.push_str(c);
            if i + 1 < r.len() {
                out.push_str(&" ".repeat(widths[i] - c.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

/// `ps`: `--format json` prints the pids (host pid namespace) as a JSON array; the table runs
/// `ps` (default `-ef`, or the arguments after the id) and keeps its header and the lines of
/// the container's processes.
pub fn ps(g: &Global, argv: &[String]) -> Res {
    let p = args::parse(argv, &[opt(&["format", "f"])], false).map_err(Fail::new)?;
    let Some((id, ps_args)) = p.args.split_first() else {
        return Err(Fail::new(
            "lifecycle-runc: \"ps\" requires a minimum of 1 argument(s)",
        ));
    };
    let c = g.root.load(id)?;
    let pids = c.pids()?;
    match p.get("format").unwrap_or("table") {
        "json" => {
            println!("{}", serde_json::to_string(&pids).unwrap_or_default());
            Ok(())
        }
        "table" => {
            let ps_args: Vec<String> = if ps_args.is_empty() {
                vec!["-ef".into()]
            } else {
                ps_args.to_vec()
            };
            let out = std::process::Command::new("ps")
                .args(&ps_args)
                .output()
                .map_err(|e| Fail::new(format!("exec ps: {e}")))?;
            if !out.status.success() {
                return Err(Fail::new(format!(
                    "ps {}: {}: {}",
                    ps_args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or_else(|| Fail::new("couldn't find PID field in ps output"))?;
            let mut s = format!("{header}\n");
            for l in lines {
                if let Some(pid) = l.split_whitespace().nth(col).and_then(|f| f.parse().ok()) {
                    if pids.contains(&pid) {
                        s.push_str(l);
                        s.push('\n');
                    }
                }
            }
            print!("{s}");
            Ok(())
        }
        other => Err(Fail::new(format!("invalid format option {other:?}"))),
    }
}

/// The OCI runtime features document, with what this runtime really implements.
pub fn features(argv: &[String]) -> Res {
    args::parse(argv, &[], true).map_err(Fail::new)?;
    let mut caps: Vec<caps::Capability> = caps::all().into_iter().collect();
    caps.sort_by_key(|c| c.index());
    let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
    // Structs rather than a json! map, to print the keys in the specification's (and runc's)
    // order.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Features {
        oci_version_min: &'static str,
        oci_version_max: &'static str,
        hooks: Value,
        mount_options: Vec<&'static str>,
        linux: Linux,
        annotations: Value,
    }
    #[derive(Serialize)]
    struct Linux {
        namespaces: Value,
        capabilities: Vec<String>,
        cgroup: Value,
        seccomp: Value,
        apparmor: Value,
        selinux: Value,
    }
    let doc = Features {
        oci_version_min: OCI_VERSION_MIN,
        oci_version_max: OCI_VERSION_MAX,
        hooks: json!([
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ]),
        mount_options: lifecycle_runtime::mount_options(),
        linux: Linux {
            // No time namespace; a mount namespace can only be new.
            namespaces: json!(["cgroup", "ipc", "mount", "network", "pid", "user", "uts"]),
            capabilities: caps,
            cgroup: json!({"v1": true, "v2": true, "systemd": false, "systemdUser": false}),
            seccomp: json!({
                "enabled": true,
                // No SCMP_ACT_NOTIFY: there is no seccomp agent (listenerPath).
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64",
                          "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64",
                          "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE",
                          "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_X32", "SCMP_ARCH_X86",
                          "SCMP_ARCH_X86_64"]
            }),
            apparmor: json!({"enabled": true}),
            selinux: json!({"enabled": true}),
        },
        annotations: json!({
            "org.lifecycle-shim.runc.version": env!("CARGO_PKG_VERSION"),
            "org.opencontainers.runc.checkpoint.enabled": "false"
        }),
    };
    print_json(&doc, b"    ", true)
}

/// `spec`: a default config.json (busybox-friendly: `sh` on a terminal, as `runc spec`).
pub fn spec(argv: &[String]) -> Res {
    let p = args::parse(argv, &[opt(&["bundle", "b"]), flag(&["rootless"])], true)
        .map_err(Fail::new)?;
    if p.is("rootless") {
        return Err(Fail::new("spec --rootless is not supported"));
    }
    let dir = std::path::PathBuf::from(p.get("bundle").unwrap_or("."));
    let path = dir.join("config.json");
    if path.exists() {
        return Err(Fail::new("File config.json exists. Remove it first"));
    }
    let mut spec = lifecycle_runtime::default_spec();
    spec["hostname"] = "lifecycle-runc".into();
    let text = serde_json::to_vec_pretty(&spec).unwrap_or_default();
    std::fs::write(&path, text).map_err(|e| Fail::new(format!("write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_like_runc() {
        let rows = vec![
            ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(str::to_owned),
            [
                "t1",
                "482",
                "created",
                "/tmp/rb",
                "2026-11-21T22:44:13.717045412Z",
                "root",
            ]
            .map(str::to_owned),
        ];
        assert_eq!(
            table(&rows),
            "ID          PID         STATUS      BUNDLE      CREATED                          OWNER\n\
             t1          482         created     /tmp/rb     2026-11-21T22:44:13.717045412Z   root\n"
        );
    }
}
