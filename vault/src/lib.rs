//! authsome-vault
