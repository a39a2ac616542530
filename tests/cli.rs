//! End-to-end tests of the everyday CLI.
