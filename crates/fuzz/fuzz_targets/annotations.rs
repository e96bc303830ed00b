//! `HookConfig::from_annotations` over arbitrary annotation maps: it must answer Ok or an error
//! whose message can be printed, never panic. The input is a JSON object of strings when it
//! parses as one (the corpus' shape), else lines of `key=value` (arbitrary bytes, lossy UTF-8),
//! with keys biased towards the `lifecycle.shim/` settings so the handlers' parsers are reached.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use lifecycle_hooks::HookConfig;

const KEYS: &[&str] = &[
    "lifecycle.shim/post-start",
    "lifecycle.shim/pre-stop",
    "lifecycle.shim/termination-grace-period-seconds",
    "lifecycle.shim/post-start-timeout-seconds",
    "lifecycle.shim/post-start-order",
    "lifecycle.shim/stop-signal",
    "lifecycle.shim/hook-output",
    "io.kubernetes.cri.container-type",
    "io.kubernetes.cri.container-name",
    "io.kubernetes.container.ports",
    "io.kubernetes.pod.terminationGracePeriod",
];

fuzz_target!(|data: &[u8]| {
    let map: HashMap<String, String> = match serde_json::from_slice(data) {
        Ok(map) => map,
        Err(_) => String::from_utf8_lossy(data)
            .lines()
            .map(|line| {
                let (k, v) = line.split_once('=').unwrap_or((line, ""));
                // A leading digit picks a known key, so short inputs reach the value parsers.
                let key = match k.as_bytes().first() {
                    Some(b) if b.is_ascii_digit() => {
                        let known = KEYS[(*b - b'0') as usize % KEYS.len()];
                        format!("{}{}", known, &k[1..])
                    }
                    _ => k.to_owned(),
                };
                (key, v.to_owned())
            })
            .collect(),
    };
    if let Err(e) = HookConfig::from_annotations(&map) {
        let _ = e.to_string();
    }
});
