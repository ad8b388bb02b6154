//! Test support for the inspection tests: hex fixtures, what a PDU's observations say
//! (commands, protocol errors, identities), and (from `otsensor-wire`'s
//! `test-support` feature, the one copy) the PDUs of a capture's TCP streams framed by
//! a view's framer.

pub use otsensor_wire::test_capture::{framed_pdus, hex};

use crate::observe::{CommandKind, IdentityField, Observation, ProtocolErrorKind};

/// The (kind, code) of every command observation.
pub fn commands(observations: &[Observation]) -> Vec<(CommandKind, u32)> {
    observations
        .iter()
        .filter_map(|o| match o {
            Observation::Command { kind, code, .. } => Some((*kind, *code)),
            _ => None,
        })
        .collect()
}

/// The object of every object-access observation (what a request addressed).
pub fn objects(observations: &[Observation]) -> Vec<u64> {
    observations
        .iter()
        .filter_map(|o| match o {
            Observation::ObjectAccess { object, .. } => Some(*object),
            _ => None,
        })
        .collect()
}

/// The (kind, code) of every protocol-error observation.
pub fn errors(observations: &[Observation]) -> Vec<(ProtocolErrorKind, u32)> {
    observations
        .iter()
        .filter_map(|o| match o {
            Observation::ProtocolError { kind, code, .. } => Some((*kind, *code)),
            _ => None,
        })
        .collect()
}

/// The (field, value) of every identity observation.
pub fn identities(observations: &[Observation]) -> Vec<(IdentityField, String)> {
    observations
        .iter()
        .filter_map(|o| match o {
            Observation::Identity { field, value, .. } => Some((*field, value.as_str().to_owned())),
            _ => None,
        })
        .collect()
}
