//! A private containerd for tests (filled in below).
