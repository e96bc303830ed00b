//! OCI runtime hooks: order, namespace, state on stdin, failure and timeout. Included by
//! containers.rs.

use std::{fs, os::unix::fs::PermissionsExt, time::Duration};

use lifecycle_runtime::{reaper, Stdio};
use serde_json::{json, Value};

use crate::common::*;

fn hook(script: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
}

pub fn hooks_run_in_order_with_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    let d = dir.path().display().to_string();
    let mut fx = Fixture::new(&["/bin/sh", "-c", "echo entrypoint >> /hooks/log"]);
    fx.bundle.spec["mounts"].as_array_mut().expect("mounts").push(json!({"destination": "/hooks", "type": "bind", "source": d, "options": ["bind", "rw"]}));
    // In the runtime namespace: the host's /bin/sh, the state on stdin.
    let caller = |name: &str| hook(&format!("cat > {d}/{name}.json; echo {name} >> {d}/log"));
    fx.bundle.spec["hooks"] = json!({
        "prestart": [caller("prestart")],
        "createRuntime": [caller("createRuntime")],
        // In the container's mount namespace before pivot_root: host paths still resolve.
        "createContainer": [hook(&format!("cat > {d}/createContainer.json; echo createContainer $(readlink /proc/self/ns/uts) >> {d}/log"))],
        // Inside the container after pivot_root: the container's sh and /hooks.
        "startContainer": [hook("cat > /hooks/startContainer.json; echo startContainer $(hostname) >> /hooks/log")],
        "poststart": [caller("poststart")],
        "poststop": [caller("poststop")],
    });
    let sub = reaper::subscribe();
    let c = fx.create(Stdio::default()).expect("create").container;
    let log = || fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    // createContainer runs in the container's namespaces (the hostname is set after it, as in
    // runc, so compare namespaces).
    let uts = fs::read_link(format!("/proc/{}/ns/uts", c.init_pid()))
        .expect("uts ns")
        .display()
        .to_string();
    assert_eq!(
        log(),
        format!("prestart\ncreateRuntime\ncreateContainer {uts}\n")
    );
    c.start().expect("start");
    sub.wait_for(c.init_pid(), Some(Duration::from_secs(10)))
        .expect("exit");
    c.delete().expect("delete");
    fx.assert_clean();
    let lines: Vec<String> = log().lines().map(str::to_owned).collect();
    assert_eq!(
        &lines[..4],
        &[
            "prestart".to_owned(),
            "createRuntime".into(),
            format!("createContainer {uts}"),
            "startContainer runc".into()
        ]
    );
    // poststart runs after the entrypoint exec'd; the entrypoint may log before or after it.
    let mut rest = lines[4..].to_vec();
    assert_eq!(rest.pop().as_deref(), Some("poststop"), "{lines:?}");
    rest.sort();
    assert_eq!(rest, vec!["entrypoint", "poststart"]);
    let state = |name: &str| -> Value {
        serde_json::from_slice(
            &fs::read(dir.path().join(format!("{name}.json"))).expect("state file"),
        )
        .expect("state json")
    };
    for (name, status) in [
        ("prestart", "creating"),
        ("createRuntime", "creating"),
        ("createContainer", "created"),
        ("startContainer", "created"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ] {
        let st = state(name);
        assert_eq!(st["id"], json!(fx.id), "{name}");
        assert_eq!(st["status"], json!(status), "{name}");
        assert_eq!(st["pid"], json!(c.init_pid()), "{name}");
        assert_eq!(
            st["bundle"],
            json!(fs::canonicalize(fx.bundle.path()).expect("bundle")),
            "{name}"
        );
    }
}

pub fn failing_and_slow_hooks_fail_create_cleanly() {
    let err = sh_err("true", |s| {
        s["hooks"] = json!({"createRuntime": [hook("echo broken >&2; exit 3")]})
    });
    assert!(
        err.contains("createRuntime hook 0 (/bin/sh) failed: exit status 3: broken"),
        "{err}"
    );
    let err = sh_err(
        "true",
        |s| {
            s["hooks"] =
                json!({"prestart": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]})
        },
    );
    assert!(
        err.contains("prestart hook 0 (/bin/sleep) failed: timed out after 1s"),
        "{err}"
    );
    let err = sh_err("true", |s| {
        s["hooks"] = json!({"createContainer": [hook("exit 4")]})
    });
    assert!(
        err.contains("createContainer hook 0 (/bin/sh) failed: exit status 4"),
        "{err}"
    );
    let err = sh_err(
        "true",
        |s| s["hooks"] = json!({"startContainer": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]}),
    );
    assert!(
        err.contains("startContainer hook 0 (/bin/sleep) failed: timed out"),
        "{err}"
    );
}

pub fn failing_poststart_kills_the_container() {
    let mut fx = Fixture::new(&["/bin/sleep", "1000"]);
    fx.bundle.spec["hooks"] = json!({"poststart": [hook("exit 5")]});
    let sub = reaper::subscribe();
    let c = fx.create(Stdio::default()).expect("create").container;
    let err = c
        .start()
        .expect_err("start fails with its poststart hook")
        .to_string();
    assert!(
        err.contains("poststart hook 0 (/bin/sh) failed: exit status 5"),
        "{err}"
    );
    let exit = sub
        .wait_for(c.init_pid(), Some(Duration::from_secs(10)))
        .expect("the container is killed");
    assert_eq!(exit.status, 128 + libc::SIGKILL);
    c.delete().expect("delete");
    fx.assert_clean();
}
