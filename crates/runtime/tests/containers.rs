//! Real containers from busybox bundles, observed from inside. Runs as root; never skips.

mod common;
#[path = "items/hooks.rs"]
mod hooks;
#[path = "items/ops.rs"]
mod ops;
#[path = "items/runc.rs"]
mod runc;
#[path = "items/spec.rs"]
mod spec;
#[path = "items/v2.rs"]
mod v2;

use std::time::Duration;

use common::*;
use lifecycle_runtime::{reaper, Container, Sealing, Status, Stdio};

/// (name, fn) pairs from paths.
macro_rules! tests {
    ($($path:path),* $(,)?) => { &[$((stringify!($path), $path as TestFn)),*] };
}

fn main() {
    run(tests![
        thin_path_exit_status_and_output,
        kill_held_and_running,
        entrypoint_not_found_fails_create_cleanly,
        load_and_delete_from_another_handle,
        exec_fifo_start_from_another_handle,
        spec::default_mounts_as_runc,
        spec::bind_mounts_with_flags_and_propagation,
        spec::bad_mount_fails_create_by_name,
        spec::dev_default_and_spec_devices,
        spec::devices_cgroup_denies_unlisted,
        spec::masked_and_readonly_paths,
        spec::sysctls_hostname_domainname,
        spec::rlimits_lowered,
        spec::capabilities_and_no_new_privs,
        spec::seccomp_filter,
        spec::user_groups_umask_env_cwd,
        spec::no_host_fds_and_pid_namespace,
        spec::unimplemented_fields_fail_by_name,
        spec::missing_rootfs_fails_by_name,
        spec::bad_process_values_fail_by_name,
        spec::cgroup_namespace,
        spec::cwd_through_proc_fd_never_reaches_the_host,
        spec::lsm_settings_fail_without_the_lsm,
        spec::leaked_fds_do_not_reach_the_container,
        ops::exec_into_created_and_running,
        ops::pids_pause_resume_kill_all,
        ops::resources_at_create_and_update,
        ops::terminal_for_init_and_exec,
        ops::user_namespace_with_maps,
        ops::join_namespaces_by_path,
        ops::oom_is_reported,
        ops::concurrent_containers_from_threads,
        ops::rootfs_propagation_modes,
        hooks::hooks_run_in_order_with_state,
        hooks::failing_and_slow_hooks_fail_create_cleanly,
        hooks::failing_poststart_kills_the_container,
        helper_exe_is_sealed_and_helpers_not_dumpable,
        runc::same_observations_as_runc,
        runc::same_exec_observations_as_runc,
        runc::same_observations_in_a_user_namespace_as_runc,
        v2::v2_devices_filter_freeze_kill,
    ]);
}

fn thin_path_exit_status_and_output() {
    let o = sh("echo hello; echo oops >&2; exit 3", |_| {});
    assert_eq!(o.status, 3);
    assert_eq!(o.stdout, "hello\n");
    assert_eq!(o.stderr, "oops\n");
}

fn kill_held_and_running() {
    let fx = Fixture::new(&["/bin/sleep", "1000"]);
    let sub = reaper::subscribe();
    let c = fx.create(Stdio::default()).expect("create").container;
    assert_eq!(c.status(), Status::Created);
    let pids = c.pids().expect("pids");
    assert_eq!(
        pids,
        vec![c.init_pid()],
        "only the held init is in the cgroup"
    );
    c.start().expect("start");
    assert_eq!(c.status(), Status::Running);
    c.kill(libc::SIGKILL, false).expect("kill");
    let exit = sub
        .wait_for(c.init_pid(), Some(Duration::from_secs(10)))
        .expect("exit after SIGKILL");
    assert_eq!(exit.status, 128 + libc::SIGKILL);
    assert_eq!(c.status(), Status::Stopped);
    let err = c
        .kill(libc::SIGTERM, false)
        .expect_err("kill of an exited init");
    assert!(
        matches!(err, lifecycle_runtime::Error::NotRunning { .. }),
        "{err}"
    );
    let err = c.start().expect_err("start twice");
    assert!(
        matches!(err, lifecycle_runtime::Error::State { .. }),
        "{err}"
    );
    c.delete().expect("delete");
    c.delete().expect("delete is idempotent");
    fx.assert_clean();

    // A held (never started) container can be killed and deleted too.
    let fx = Fixture::new(&["/bin/sleep", "1000"]);
    let c = fx.create(Stdio::default()).expect("create").container;
    c.kill(libc::SIGKILL, true).expect("kill all");
    c.delete().expect("delete");
    fx.assert_clean();
}

fn entrypoint_not_found_fails_create_cleanly() {
    let mut fx = Fixture::new(&["/nope"]);
    fx.bundle.spec["process"]["args"] = serde_json::json!(["/nope"]);
    let err = match fx.create(Stdio::default()) {
        Ok(_) => panic!("create must fail"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("process.args[0] \"/nope\" not found in rootfs"),
        "{err}"
    );
    fx.assert_clean();
    // A state dir that already holds a container is refused and left alone.
    let fx = Fixture::new(&["/bin/sleep", "1000"]);
    let c = fx.create(Stdio::default()).expect("create").container;
    let mut other = fx.options(Stdio::default());
    other.id = format!("{}-second", fx.id);
    let err = match Container::create(other) {
        Ok(_) => panic!("a second create into the same state dir must fail"),
        Err(e) => e,
    };
    // (Here the cgroup is the same too; either check refuses it.)
    assert!(err.to_string().contains("already"), "{err}");
    assert_eq!(
        Container::load(&fx.state_dir())
            .expect("first state intact")
            .id(),
        fx.id
    );
    c.delete().expect("delete");
    fx.assert_clean();
}

fn load_and_delete_from_another_handle() {
    let fx = Fixture::new(&["/bin/sleep", "1000"]);
    let created = fx.create(Stdio::default()).expect("create");
    let c = created.container;
    c.start().expect("start");
    let loaded = Container::load(&fx.state_dir()).expect("load");
    assert_eq!(loaded.init_pid(), c.init_pid());
    assert_eq!(loaded.id(), fx.id);
    assert_eq!(loaded.status(), Status::Running);
    loaded.delete().expect("delete through the loaded handle");
    assert!(Container::load(&fx.state_dir()).is_err());
    fx.assert_clean();
}

/// `Hold::ExecFifo`: the creating handle can go away; a loaded handle sees Created while
/// exec.fifo exists, starts the container, and gets the init's error back through the FIFO.
fn exec_fifo_start_from_another_handle() {
    let fx = Fixture::new(&["/bin/sleep", "1000"]);
    fx.bundle.write_spec();
    let sub = reaper::subscribe();
    let mut opts = fx.options(Stdio::default());
    opts.hold = lifecycle_runtime::Hold::ExecFifo;
    let created = Container::create(opts).expect("create");
    let pid = created.container.init_pid();
    assert_eq!(created.container.status(), Status::Created);
    drop(created);
    let fifo = fx.state_dir().join("exec.fifo");
    assert!(fifo.exists());
    // Still held after the creating handle is gone (its channel closed).
    std::thread::sleep(Duration::from_millis(100));
    let loaded = Container::load(&fx.state_dir()).expect("load");
    assert_eq!(loaded.status(), Status::Created);
    loaded.start().expect("start through the loaded handle");
    assert!(!fifo.exists());
    assert_eq!(loaded.status(), Status::Running);
    let again = Container::load(&fx.state_dir()).expect("load again");
    assert!(again.start().is_err(), "a second start must fail");
    loaded.kill(libc::SIGKILL, false).expect("kill");
    sub.wait_for(pid, Some(Duration::from_secs(10)))
        .expect("init exit");
    assert_eq!(loaded.status(), Status::Stopped);
    loaded.delete().expect("delete");
    fx.assert_clean();

    // An error after start (the cwd does not exist) comes back through the FIFO.
    let mut fx = Fixture::new(&["/bin/sleep", "1000"]);
    fx.bundle.spec["process"]["cwd"] = serde_json::json!("/does-not-exist");
    fx.bundle.write_spec();
    let mut opts = fx.options(Stdio::default());
    opts.hold = lifecycle_runtime::Hold::ExecFifo;
    drop(Container::create(opts).expect("create"));
    let loaded = Container::load(&fx.state_dir()).expect("load");
    let err = loaded
        .start()
        .expect_err("start with a bad cwd")
        .to_string();
    assert!(
        err.contains("cwd") || err.contains("does-not-exist"),
        "{err}"
    );
    loaded.delete().expect("delete");
    fx.assert_clean();
}

/// Neither opening for writing nor writing or truncating through `path` changes the file.
fn assert_unwritable(path: &std::path::Path) {
    use std::io::Write;
    match std::fs::OpenOptions::new().write(true).open(path) {
        // The read-only mount: EROFS (ETXTBSY while this very binary runs from it is fine too).
        Err(e) => assert!(
            matches!(e.raw_os_error(), Some(libc::EROFS) | Some(libc::ETXTBSY)),
            "open {} for writing: {e}",
            path.display()
        ),
        // The sealed copy opens, but refuses changes.
        Ok(mut f) => {
            let err = f.write_all(b"x").expect_err("write to the sealed copy");
            assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
            assert!(f.set_len(0).is_err(), "truncate the sealed copy");
        }
    }
}

fn helper_exe_is_sealed_and_helpers_not_dumpable() {
    let exe = lifecycle_runtime::HelperExe::get().expect("helper exe");
    assert!(
        std::ptr::eq(exe, lifecycle_runtime::HelperExe::get().expect("again")),
        "one handle per process"
    );
    // This host allows detached mounts: the no-copy protection is the one in use.
    assert_eq!(exe.sealing(), Sealing::ReadOnlyMount);
    assert_unwritable(&exe.path());
    // The fallback for hosts that refuse detached mounts.
    let copy = lifecycle_runtime::HelperExe::sealed_copy().expect("sealed copy");
    assert_eq!(copy.sealing(), Sealing::SealedCopy);
    let fd: i32 = copy
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .expect("fd path");
    // SAFETY: fcntl on an fd `copy` owns.
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    let want = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    assert_eq!(seals & want, want, "seals {seals:#x}");
    assert_unwritable(&copy.path());
    // A container process (root, without CAP_SYS_PTRACE) cannot reach the held init's
    // executable: the helper made itself non-dumpable.
    let fx = Fixture::new(&["/bin/sleep", "1000"]);
    let c = fx.create(Stdio::default()).expect("create").container;
    let sub = reaper::subscribe();
    let (r, w) = pipe();
    let mut p = c.spec().process().clone().expect("process");
    p.set_args(Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "readlink /proc/1/exe; echo exe=$?; readlink /proc/1/fd/0; echo fd=$?".into(),
    ]));
    let s = c
        .exec(
            &p,
            Stdio {
                stdin: None,
                stdout: Some(w),
                stderr: None,
            },
        )
        .expect("exec");
    let out = drain(r);
    sub.wait_for(s.pid, Some(Duration::from_secs(10)))
        .expect("exec exits");
    let out = out.join().unwrap_or_default();
    assert_eq!(
        out, "exe=1\nfd=1\n",
        "readlink of the held init's exe and fds must fail"
    );
    c.delete().expect("delete");
    fx.assert_clean();
}
