//! containerd-shim-lifecycle-v1 as a library: the binary (`main.rs`) and the in-process tests
//! (`tests/`) use the same modules.

pub mod delete;
pub mod errors;
pub mod events;
pub mod flags;
pub mod info;
mod io;
mod lifecycle;
mod logger;
mod mount;
mod oom;
pub mod process;
pub mod server;
mod service;
mod sha256;
pub mod start;
mod stats;
pub mod task;

pub use service::{services, TASK_V2, TASK_V3};
