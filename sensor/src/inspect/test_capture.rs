//! Test support for the inspection tests: hex fixtures, and (from `otsensor-wire`'s
//! `test-support` feature, the one copy) the PDUs of a capture's TCP streams framed by
//! a view's framer.

pub use otsensor_wire::test_capture::{framed_pdus, hex};
