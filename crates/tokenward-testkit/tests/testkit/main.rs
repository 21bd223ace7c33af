//! Tests of the fake server itself: the token endpoint, the protected resource, the faults,
//! the TCP listener and Debug redaction.

mod debug;
mod faults;
mod helpers;
mod resource;
mod tcp;
mod token;
