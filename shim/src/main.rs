//! containerd-shim-lifecycle-v1: the containerd shim v2 for `io.containerd.lifecycle.v1`.
//!
//! One binary, four roles chosen by the command line: a runtime helper (re-executed by the
//! runtime library, handled before anything else), `start` and `delete` (short, blocking, on
//! every container's critical path), `-info`, and with no action the long-lived server.

use std::io::Write;

use containerd_shim_lifecycle_v1::{
    delete,
    flags::{Action, Flags},
    info, server, start,
};

fn write_stdout(data: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(data)?;
    out.flush()
}

fn main() {
    // Rust sets SIGPIPE to "ignore" before main, and exec keeps ignored signals: container
    // processes, started by helpers re-executed from this binary, would inherit it (runc's do
    // not). Helpers get the default back; the shim's own roles ignore it again, since they
    // write to FIFOs and sockets whose reader may be gone.
    // SAFETY: signal(2) with a standard disposition, before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // Helper processes (container init, exec) are this binary re-executed: they never return.
    lifecycle_runtime::run_helper_if_requested();
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };

    let flags = match Flags::parse(std::env::args().skip(1)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("containerd-shim-lifecycle-v1: {e}");
            std::process::exit(2);
        }
    };
    let result: Result<(), String> = match flags.action {
        Action::Version => {
            println!(
                "containerd-shim-lifecycle-v1:\n  Version: {}",
                env!("CARGO_PKG_VERSION")
            );
            Ok(())
        }
        Action::Info => info::run()
            .map_err(|e| e.to_string())
            .and_then(|d| write_stdout(&d).map_err(|e| e.to_string())),
        Action::Start => start::run(&flags)
            .map_err(|e| e.to_string())
            .and_then(|d| write_stdout(&d).map_err(|e| e.to_string())),
        Action::Delete => delete::run(&flags)
            .map_err(|e| e.to_string())
            .and_then(|d| write_stdout(&d).map_err(|e| e.to_string())),
        Action::Serve => {
            server::one_malloc_arena();
            server::serve(&flags).map_err(|e| e.to_string())
        }
    };
    if let Err(e) = result {
        eprintln!("containerd-shim-lifecycle-v1: {e}");
        std::process::exit(1);
    }
}
