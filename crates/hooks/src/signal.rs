//! Signal names and numbers for `lifecycle.shim/stop-signal`: the runtime crate's, so that
//! the annotation and `lifecycle-runc kill` read names the same way.

pub use lifecycle_runtime::Signal;
