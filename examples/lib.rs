//! Examples for tokenward: see the `[[example]]` entries.
