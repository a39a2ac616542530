//! The wire between the sidecar and the host's authsome: one Unix stream per captured
//! connection (and one for control, one per DNS query), each opened with a hello that carries
//! the run's token and what the stream is.
//!
//! The hello is a two-byte big-endian length and that many bytes of ASCII,
//! `authsome-sidecar/1 TOKEN KIND [ARG]`; whatever follows belongs to the stream (the captured
//! connection's bytes, or length-prefixed DNS packets). Parsing is pure so it is tested here;
//! the token is compared in constant time and never echoed in an error.

use std::net::SocketAddr;

/// Name of the socket in the run's directory, and of that directory inside the sidecar.
pub(crate) const SOCKET_NAME: &str = "channel.sock";
/// The token file in the run's directory; removed by the host once the sidecar is ready.
pub(crate) const TOKEN_NAME: &str = "token";
/// Where the run's directory is mounted inside the sidecar.
pub(crate) const SIDECAR_DIR: &str = "/run/authsome";

const MAGIC: &str = "authsome-sidecar/1";
/// Hellos are short; anything longer is not ours.
pub(crate) const HELLO_LIMIT: usize = 512;

/// What a stream opened by the sidecar carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hello {
    /// The sidecar's lifeline: it reports `ready` (or why not) and lives as long as this stream.
    Control,
    /// A captured TCP connection to this original destination; raw bytes follow.
    Tcp(SocketAddr),
    /// DNS queries: `u16` length + packet in, `u16` length + reply out (0: no reply).
    Dns,
    /// A connection to the inner `HTTP(S)_PROXY` listener (cooperating clients).
    Proxy,
}

/// Why a hello was refused. Never carries the token that was presented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HelloError {
    #[error("not a sidecar hello")]
    Malformed,
    #[error("wrong run token")]
    BadToken,
}

/// The hello for `hello`, length prefix included.
pub(crate) fn encode(token: &str, hello: &Hello) -> Vec<u8> {
    let text = match hello {
        Hello::Control => format!("{MAGIC} {token} control"),
        Hello::Tcp(addr) => format!("{MAGIC} {token} tcp {addr}"),
        Hello::Dns => format!("{MAGIC} {token} dns"),
        Hello::Proxy => format!("{MAGIC} {token} proxy"),
    };
    let mut out = Vec::with_capacity(text.len() + 2);
    out.extend_from_slice(&(text.len() as u16).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

/// Parse a hello's text (without its length prefix), checking the token.
pub(crate) fn parse(text: &[u8], token: &str) -> Result<Hello, HelloError> {
    let text = std::str::from_utf8(text).map_err(|_| HelloError::Malformed)?;
    let mut words = text.split(' ');
    if words.next() != Some(MAGIC) {
        return Err(HelloError::Malformed);
    }
    let presented = words.next().ok_or(HelloError::Malformed)?;
    let kind = words.next().ok_or(HelloError::Malformed)?;
    let arg = words.next();
    if words.next().is_some() {
        return Err(HelloError::Malformed);
    }
    if !constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        return Err(HelloError::BadToken);
    }
    match (kind, arg) {
        ("control", None) => Ok(Hello::Control),
        ("dns", None) => Ok(Hello::Dns),
        ("proxy", None) => Ok(Hello::Proxy),
        ("tcp", Some(addr)) => addr.parse().map(Hello::Tcp).map_err(|_| HelloError::Malformed),
        _ => Err(HelloError::Malformed),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef";

    fn roundtrip(hello: Hello) -> Result<Hello, HelloError> {
        let bytes = encode(TOKEN, &hello);
        let len = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
        assert_eq!(len, bytes.len() - 2);
        parse(&bytes[2..], TOKEN)
    }

    #[test]
    fn every_kind_round_trips() {
        for hello in [
            Hello::Control,
            Hello::Dns,
            Hello::Proxy,
            Hello::Tcp("1.2.3.4:443".parse().unwrap()),
            Hello::Tcp("[2001:db8::1]:8443".parse().unwrap()),
        ] {
            assert_eq!(roundtrip(hello.clone()), Ok(hello));
        }
    }

    #[test]
    fn another_runs_token_is_refused() {
        let bytes = encode("fedcba9876543210", &Hello::Control);
        assert_eq!(parse(&bytes[2..], TOKEN), Err(HelloError::BadToken));
        let short = encode("0123", &Hello::Control);
        assert_eq!(parse(&short[2..], TOKEN), Err(HelloError::BadToken));
        let empty = encode("", &Hello::Control);
        assert_ne!(parse(&empty[2..], ""), Ok(Hello::Control));
    }

    #[test]
    fn malformed_hellos_are_refused() {
        for text in [
            "",
            "GET / HTTP/1.1",
            "authsome-sidecar/1",
            "authsome-sidecar/2 0123456789abcdef control",
            "authsome-sidecar/1 0123456789abcdef tcp",
            "authsome-sidecar/1 0123456789abcdef tcp nothost",
            "authsome-sidecar/1 0123456789abcdef control extra",
            "authsome-sidecar/1 0123456789abcdef shell",
        ] {
            assert_eq!(parse(text.as_bytes(), TOKEN), Err(HelloError::Malformed), "{text}");
        }
    }

    #[test]
    fn errors_never_show_the_token() {
        let bytes = encode("ffffffffffffffff", &Hello::Dns);
        let error = parse(&bytes[2..], TOKEN).unwrap_err();
        assert!(!error.to_string().contains("ffff"));
        assert!(!format!("{error:?}").contains("ffff"));
    }
}
