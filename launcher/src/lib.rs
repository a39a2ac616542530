//! authsome: library API.
#![forbid(unsafe_code)]
