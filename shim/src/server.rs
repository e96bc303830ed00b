//! The long-lived shim server: one reaper thread, a tokio runtime with a single worker (memory
//! must not grow with the node's cores), the ttrpc Task service on the socket `start` bound,
//! and the event forwarder. Exits when containerd calls Shutdown after the last Delete.

use std::{
    fs, io,
    os::{fd::FromRawFd, unix::net::UnixListener},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use lifecycle_runtime::reaper;
use tokio::sync::mpsc;

use crate::{
    events,
    flags::Flags,
    logger, service,
    start::{LISTENER_FD, TTRPC_ADDRESS_ENV},
    task::Shim,
};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("building the async runtime: {0}")]
    Runtime(#[source] io::Error),
    #[error("listening socket: {0}")]
    Listener(#[source] io::Error),
    #[error("starting the ttrpc server: {0}")]
    Ttrpc(#[source] ttrpc::Error),
}

fn listener(flags: &Flags) -> Result<UnixListener, ServeError> {
    let l = match &flags.socket {
        Some(path) => {
            let path = path.strip_prefix("unix://").unwrap_or(path);
            UnixListener::bind(path).map_err(ServeError::Listener)?
        }
        // SAFETY: `start` put the bound socket on this fd for us, and nothing else owns it.
        None => unsafe { UnixListener::from_raw_fd(LISTENER_FD) },
    };
    l.set_nonblocking(true).map_err(ServeError::Listener)?;
    // It came through exec, so close-on-exec is off: turn it back on, or every helper, logger
    // and container process would inherit the shim's socket.
    // SAFETY: fcntl on a descriptor this listener owns.
    if unsafe {
        libc::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&l),
            libc::F_SETFD,
            libc::FD_CLOEXEC,
        )
    } < 0
    {
        return Err(ServeError::Listener(io::Error::last_os_error()));
    }
    Ok(l)
}

/// The socket file to remove on exit: the `address` file `start` wrote in the bundle.
fn socket_file(flags: &Flags, cwd: &Path) -> Option<PathBuf> {
    let address = match &flags.socket {
        Some(s) => s.clone(),
        None => fs::read_to_string(cwd.join("address")).ok()?,
    };
    Some(PathBuf::from(
        address
            .trim()
            .strip_prefix("unix://")
            .unwrap_or(address.trim()),
    ))
}

/// glibc gives every thread that allocates its own arena (at least 132 KiB reserved, touched
/// pages kept after use); the server's few threads allocate little and rarely at the same
/// time, so one arena for all of them saves 30-60 KiB per shim (measured), and a node runs a
/// shim per container. Call before the server's threads start.
pub fn one_malloc_arena() {
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
}

pub fn serve(flags: &Flags) -> Result<(), ServeError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    logger::init(&cwd, &flags.namespace, flags.debug);
    // The reaper starts before any other thread so that it alone ever waits for children, and
    // subscribes before anything is spawned so that no exit is missed.
    reaper::start();
    let exits = reaper::subscribe();
    // containerd sends Create a few milliseconds after `start` answered: the cgroup
    // migration lock warms up meanwhile (lifecycle_runtime::warm_migration), for the first
    // container's join. It ends when that Create has created its container, or after 250 ms.
    let startup_warmup = lifecycle_runtime::warm_migration(Duration::from_millis(250));
    let socket = socket_file(flags, &cwd);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(8)
        .thread_keep_alive(Duration::from_secs(2))
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let result = rt.block_on(async {
        let std_listener = listener(flags)?;
        let listener =
            tokio::net::UnixListener::from_std(std_listener).map_err(ServeError::Listener)?;
        let ttrpc_address = std::env::var(TTRPC_ADDRESS_ENV).unwrap_or_default();
        if ttrpc_address.is_empty() {
            log::warn!("{TTRPC_ADDRESS_ENV} is not set: events cannot reach containerd");
        }
        let (sink, forward) = events::forwarder(ttrpc_address, flags.namespace.clone());
        tokio::spawn(forward);
        let shim = Arc::new(Shim::new(flags.namespace.clone(), sink));
        shim.hold_startup_warmup(startup_warmup);

        let (tx, mut rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("exits".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                while let Some(exit) = exits.recv() {
                    if tx.send(exit).is_err() {
                        break;
                    }
                }
            })
            .map_err(ServeError::Listener)?;
        let s = shim.clone();
        tokio::spawn(async move {
            while let Some(exit) = rx.recv().await {
                s.handle_exit(exit);
            }
        });

        // SIGTERM (an operator, or a service manager stopping the shim): finish the hook
        // sequences in progress (a preStop, its stop signal and grace deadline, a postStart),
        // then exit as on Shutdown. Containers still running are left to containerd, which
        // runs `delete` for a shim that is gone. Without this, SIGTERM would end the shim
        // in the middle of a preStop.
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                let s = shim.clone();
                tokio::spawn(async move {
                    if term.recv().await.is_none() {
                        return;
                    }
                    log::info!("SIGTERM: finishing hook sequences in progress, then exiting");
                    // A second SIGTERM does not wait (a postStart without a timeout may run on).
                    while s.hooks_busy() {
                        tokio::select! {
                            _ = term.recv() => {
                                log::warn!("second SIGTERM: exiting with hook sequences in progress");
                                break;
                            }
                            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        }
                    }
                    s.shutdown.notify_one();
                });
            }
            Err(e) => log::warn!("no SIGTERM handler: {e}"),
        }

        let mut server = ttrpc::r#async::Server::new()
            .add_listener(listener.into())
            .register_service(service::services(shim.clone()));
        server.start().await.map_err(ServeError::Ttrpc)?;
        log::info!(
            "serving tasks for namespace {} (shim pid {})",
            flags.namespace,
            std::process::id()
        );
        shim.shutdown.notified().await;
        // Let the Shutdown reply go out before the process ends.
        tokio::time::sleep(Duration::from_millis(20)).await;
        log::info!("shutting down");
        Ok(())
    });
    if let Some(path) = socket {
        let _ = fs::remove_file(path);
    }
    // Blocking-pool threads and the reaper thread would keep the runtime's drop waiting.
    std::mem::forget(rt);
    result
}
