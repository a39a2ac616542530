//! placeholder
#[derive(Debug, Default)]
pub struct FakeDns;
