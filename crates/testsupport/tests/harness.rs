//! The private-containerd harness itself, checked with the reference runtime (runc-v2), so a
//! failure of a shim test is never a harness failure in disguise.

use std::time::Duration;

use lifecycle_testsupport::containerd::{busybox_image, Containerd, Options};

#[test]
fn private_containerd_runs_an_offline_image_with_runc_v2() {
    let mut daemon = Containerd::start_with(Options {
        // This test only uses runc-v2; any file will do as our shim.
        shim: Some("/bin/true".into()),
        ..Options::default()
    });
    let images = tempfile::tempdir().expect("tempdir");
    let tar = busybox_image(images.path(), "bb", &[], &["/bin/sh"], Some("SIGQUIT"));
    daemon.ctr(&["images", "import", tar.to_str().expect("utf8")]);
    let list = daemon.ctr(&["images", "ls", "-q"]);
    assert!(
        list.contains("registry.local/bb:1"),
        "image not imported: {list}"
    );
    let out = daemon.ctr(&[
        "run",
        "--rm",
        "--runtime",
        "io.containerd.runc.v2",
        "registry.local/bb:1",
        "t1",
        "sh",
        "-c",
        "echo hello-$((6*7))",
    ]);
    assert_eq!(out.trim(), "hello-42");
    // The harness's own private namespace: the FIFOs and shim sockets are not on the host.
    assert!(
        daemon.mountinfo().contains(" /run/containerd "),
        "no private /run/containerd"
    );
    daemon.assert_clean();
    // A restart keeps the daemon usable.
    daemon.restart();
    assert!(daemon
        .ctr(&["images", "ls", "-q"])
        .contains("registry.local/bb:1"));
    assert!(daemon.leftovers(Duration::from_millis(0)).is_empty());
}
