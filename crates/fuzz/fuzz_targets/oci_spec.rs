//! The runtime's spec validation (`validate_spec`, what `Container::create` checks before it
//! creates anything) over arbitrary JSON that deserializes as an OCI runtime spec: Ok or an
//! error naming the field, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = serde_json::from_slice::<oci_spec::runtime::Spec>(data) {
        if let Err(e) = lifecycle_runtime::validate_spec(&spec) {
            let _ = e.to_string();
        }
    }
});
