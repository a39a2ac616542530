//! placeholder
use crate::credential::CredentialSource;
use crate::engine::Engine;
use crate::events::EventSink;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
impl<S: CredentialSource, E: EventSink> Engine<S, E> {
    pub(crate) async fn serve_transparent_stream<IO>(
        self: Arc<Self>,
        _stream: IO,
        _dst: SocketAddr,
        _dns: Option<&crate::dns::FakeDns>,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
    }
}
