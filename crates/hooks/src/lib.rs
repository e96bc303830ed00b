//! Lifecycle hooks (see ../../shared/DESIGN.md).
