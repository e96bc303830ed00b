//! The harness the in-process shim tests share (they are `harness = false`: the binary is
//! re-executed as the runtime's helper, so `main` must call `run_helper_if_requested` first).

/// Runs the named async tests one after another, each with a fresh `Env` (defined by the test
/// file, with a `shim: Arc<Shim>` field), on a one-worker tokio runtime, with the one reaper's
/// exits fed to the current test's shim. The first argument, when given and not a flag,
/// selects tests by substring. A failing test panics and ends the binary with a non-zero
/// status; reaching the end prints "N passed, 0 failed".
macro_rules! run_tests {
    ($($name:ident),* $(,)?) => {{
        lifecycle_runtime::reaper::start();
        let exits = lifecycle_runtime::reaper::subscribe();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
        rt.block_on(async move {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            std::thread::spawn(move || {
                while let Some(e) = exits.recv() {
                    if tx.send(e).is_err() {
                        break;
                    }
                }
            });
            let current: std::sync::Arc<std::sync::Mutex<Option<std::sync::Arc<Shim>>>> =
                std::sync::Arc::default();
            let c2 = current.clone();
            tokio::spawn(async move {
                while let Some(e) = rx.recv().await {
                    let shim = c2.lock().unwrap().clone();
                    if let Some(s) = shim {
                        s.handle_exit(e);
                    }
                }
            });
            let mut passed = 0usize;
            $(
                if filter
                    .as_deref()
                    .map_or(true, |f| stringify!($name).contains(f))
                {
                    let env = Env::new();
                    *current.lock().unwrap() = Some(env.shim.clone());
                    $name(&env).await;
                    println!("test {} ... ok", stringify!($name));
                    passed += 1;
                }
            )*
            println!("\n{passed} passed, 0 failed");
        });
    }};
}
pub(crate) use run_tests;
