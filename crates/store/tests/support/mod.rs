//! Shared by the store's test binaries (and the load generator example).
#![allow(dead_code, reason = "each test binary uses a different part")]

pub(crate) mod etcd;
