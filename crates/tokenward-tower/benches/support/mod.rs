//! Shared by the tower benches.
pub(crate) mod paired;
pub(crate) mod token;
