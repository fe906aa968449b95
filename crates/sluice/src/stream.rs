//! A TCP connection before or after TLS, for both directions: inbound
//! sessions ([`InboundStream`]) and delivery connections ([`OutboundStream`]).

use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The connection in clear, under TLS, or gone (a failed upgrade).
pub enum Stream<T> {
    Plain(TcpStream),
    Tls(Box<T>),
    Gone,
}

/// A server-side (inbound) connection.
pub type InboundStream = Stream<tokio_rustls::server::TlsStream<TcpStream>>;
/// A client-side (delivery) connection.
pub type OutboundStream = Stream<tokio_rustls::client::TlsStream<TcpStream>>;

impl<T: AsyncRead + AsyncWrite + Unpin> Stream<T> {
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Writes everything; under TLS also flushes, so the bytes leave now.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(data).await,
            Stream::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// The clear connection, for a TLS upgrade; the stream is gone until the
    /// caller puts the upgraded one back. None when not in clear.
    pub fn take_plain(&mut self) -> Option<TcpStream> {
        match std::mem::replace(self, Stream::Gone) {
            Stream::Plain(tcp) => Some(tcp),
            other => {
                *self = other;
                None
            }
        }
    }
}
