//! authsome-proxy: the credential-injecting HTTPS proxy.
//!
//! Owns the MITM certificate authority, the explicit (`HTTP(S)_PROXY`) and transparent (sandbox)
//! ways in, and the injection engine. It knows nothing of vaults or providers: it asks a
//! `CredentialSource` for what to put on the wire.
#![forbid(unsafe_code)]
