//! Integration test crate: the tests are in the `[[test]]` targets beside this file.
