//! The cgroup v2 path with a real container, on this host's unified tree (hybrid host: the
//! v2 tree has no controllers, so no resources; devices, freeze, kill, procs do work).
//! Included by containers.rs.

use std::time::Duration;

use lifecycle_runtime::{reaper, Status, Stdio};

use crate::common::*;

const UNIFIED: &str = "/sys/fs/cgroup/unified";

struct V2Env;

impl V2Env {
    fn set() -> V2Env {
        assert!(
            std::path::Path::new(UNIFIED).join("cgroup.procs").exists(),
            "no cgroup2 tree at {UNIFIED}"
        );
        // Safe enough here: the runner runs one test at a time and no other thread reads env.
        std::env::set_var("LIFECYCLE_CGROUP2_ROOT", UNIFIED);
        V2Env
    }
}

impl Drop for V2Env {
    fn drop(&mut self) {
        std::env::remove_var("LIFECYCLE_CGROUP2_ROOT");
    }
}

pub fn v2_devices_filter_freeze_kill() {
    let _env = V2Env::set();
    // The default spec denies every device, then runc's defaults are allowed: /dev/kmsg
    // (c 1:11) must be refused by the eBPF filter alone (the v1 devices cgroup of this test
    // process allows everything).
    let o = sh(
        "head -c 1 /dev/zero > /dev/null && echo zero-ok; mknod /tmp/null2 c 1 3 && echo x > /tmp/null2 && echo null2-ok; mknod /tmp/kmsg c 1 11 && echo mknod-ok; (echo lifecycle-runtime-test > /tmp/kmsg) 2>/dev/null && echo KMSG-OPENED || echo kmsg-denied; grep '^0::' /proc/self/cgroup",
        |s| {
            s["root"]["readonly"] = serde_json::json!(false);
            s["process"]["capabilities"]["bounding"].as_array_mut().expect("caps").push(serde_json::json!("CAP_MKNOD"));
            s["process"]["capabilities"]["effective"].as_array_mut().expect("caps").push(serde_json::json!("CAP_MKNOD"));
            s["process"]["capabilities"]["permitted"].as_array_mut().expect("caps").push(serde_json::json!("CAP_MKNOD"));
        },
    );
    // Allowed: default devices, mknod of any char device ("c *:* m"); denied: opening 1:11 (/dev/kmsg, opened write-only: no CAP_SYSLOG needed).
    assert!(
        o.stdout
            .starts_with("zero-ok\nnull2-ok\nmknod-ok\nkmsg-denied\n"),
        "{} {}",
        o.stdout,
        o.stderr
    );
    assert!(
        o.stdout.contains("0::/lc-test/"),
        "the container is in its v2 cgroup: {}",
        o.stdout
    );
    // Control: without device rules there is no filter, and the same open succeeds.
    let o = sh(
        "mknod /tmp/kmsg c 1 11 && echo lifecycle-runtime-test > /tmp/kmsg && echo kmsg-opened",
        |s| {
            s["root"]["readonly"] = serde_json::json!(false);
            s["linux"]["resources"]["devices"] = serde_json::json!([]);
            for set in ["bounding", "effective", "permitted"] {
                s["process"]["capabilities"][set]
                    .as_array_mut()
                    .expect("caps")
                    .push(serde_json::json!("CAP_MKNOD"));
            }
        },
    );
    assert_eq!(o.stdout, "kmsg-opened\n", "{}", o.stderr);

    let fx = Fixture::new(&["/bin/sh", "-c", "sleep 1000 & sleep 1000"]);
    let sub = reaper::subscribe();
    let c = fx.create(Stdio::default()).expect("create").container;
    c.start().expect("start");
    let procs = format!("{UNIFIED}{}/cgroup.procs", fx.cgroup);
    assert!(std::fs::read_to_string(&procs)
        .expect("v2 cgroup.procs")
        .contains(&c.init_pid().to_string()));
    c.pause().expect("pause");
    assert_eq!(c.status(), Status::Paused);
    c.resume().expect("resume");
    assert_eq!(c.status(), Status::Running);
    c.kill(libc::SIGKILL, true)
        .expect("kill all through cgroup.kill");
    let exit = sub
        .wait_for(c.init_pid(), Some(Duration::from_secs(10)))
        .expect("exit");
    assert_eq!(exit.status, 128 + libc::SIGKILL);
    c.delete().expect("delete");
    fx.assert_clean();
}
