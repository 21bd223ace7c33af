//! Tests of the fake server itself: the authorization, token, introspection and revocation
//! endpoints, the protected resource, the faults, the TCP listener and Debug redaction.

mod authorize;
mod debug;
mod faults;
mod helpers;
mod introspect;
mod resource;
mod tcp;
mod token;
