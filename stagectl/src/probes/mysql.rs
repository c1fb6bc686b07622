//! The `mysql` readiness probe: connect, read the server's first packet. A server that accepts
//! connections greets with its initial handshake (protocol version 10); one that cannot take
//! this client sends an error packet instead ("Too many connections", "Host ... is blocked").
//! The probe then answers the greeting with a login that is meant to fail (a user that does not
//! exist, no password), so the server sees a completed handshake rather than an aborted
//! connection (which servers count towards blocking the host, `max_connect_errors`).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ProbeError;

/// Largest first packet read: a greeting is about 100 bytes, an error packet a few hundred.
const MAX_FIRST_PACKET: usize = 64 * 1024;
/// How long the courtesy login may wait for the server's answer; readiness never depends on it.
const GOODBYE_WAIT: Duration = Duration::from_millis(200);

/// What the server's first packet says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Greeting {
    /// Protocol 10 handshake: the server accepts connections.
    Handshake { server_version: String, connection_id: u32 },
    /// An error packet: `code` and the server's message (and SQLSTATE, when it sent one).
    Error { code: u16, sql_state: Option<String>, message: String },
}

/// Why a first packet is not one a MySQL server sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum BadPacket {
    #[error("empty packet")]
    Empty,
    #[error("protocol version {0} (want 10)")]
    Protocol(u8),
    #[error("handshake cut short")]
    Truncated,
}

/// Parses the payload of the server's first packet (without the 4-byte packet header).
pub(super) fn parse_greeting(payload: &[u8]) -> Result<Greeting, BadPacket> {
    match payload.first() {
        None => Err(BadPacket::Empty),
        Some(0xff) => {
            let code = u16::from_le_bytes([*payload.get(1).ok_or(BadPacket::Truncated)?, *payload.get(2).ok_or(BadPacket::Truncated)?]);
            let rest = &payload[3..];
            // `#` and a 5-character SQLSTATE, once the client said it speaks protocol 4.1; an
            // error sent before the handshake has none.
            let (sql_state, message) = match rest {
                [b'#', state @ ..] if state.len() >= 5 => (Some(String::from_utf8_lossy(&state[..5]).into_owned()), &state[5..]),
                _ => (None, rest),
            };
            Ok(Greeting::Error { code, sql_state, message: String::from_utf8_lossy(message).trim().to_string() })
        }
        Some(10) => {
            let body = &payload[1..];
            let nul = body.iter().position(|b| *b == 0).ok_or(BadPacket::Truncated)?;
            let server_version = String::from_utf8_lossy(&body[..nul]).into_owned();
            // Then: connection id (4), auth data part 1 (8), filler (1), capabilities (2), ...
            let after = &body[nul + 1..];
            if after.len() < 4 + 8 + 1 + 2 {
                return Err(BadPacket::Truncated);
            }
            let connection_id = u32::from_le_bytes([after[0], after[1], after[2], after[3]]);
            Ok(Greeting::Handshake { server_version, connection_id })
        }
        Some(other) => Err(BadPacket::Protocol(*other)),
    }
}

/// A HandshakeResponse41 for a user that should not exist, with no password: the server
/// answers "access denied" and the connection ends as a completed (failed) login.
pub(super) fn courtesy_login() -> Vec<u8> {
    const CLIENT_LONG_PASSWORD: u32 = 0x1;
    const CLIENT_PROTOCOL_41: u32 = 0x200;
    const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
    let mut payload = Vec::with_capacity(64);
    payload.extend_from_slice(&(CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION).to_le_bytes());
    payload.extend_from_slice(&(1u32 << 24).to_le_bytes()); // max packet size
    payload.push(33); // utf8_general_ci
    payload.extend_from_slice(&[0u8; 23]);
    payload.extend_from_slice(b"stagectl-probe\0");
    payload.push(0); // auth response length: no password
    let mut packet = Vec::with_capacity(payload.len() + 4);
    packet.extend_from_slice(&(payload.len() as u32).to_le_bytes()[..3]);
    packet.push(1); // sequence id: the reply to the greeting (0)
    packet.extend_from_slice(&payload);
    packet
}

/// Ready when the server's first packet is a protocol-10 handshake.
pub(super) async fn mysql_accepting(addr: &str) -> Result<(), ProbeError> {
    let io = |source| ProbeError::MysqlIo { addr: addr.to_string(), source };
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await.map_err(|source| ProbeError::MysqlNoAnswer { addr: addr.to_string(), source })?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
    if len > MAX_FIRST_PACKET {
        return Err(ProbeError::MysqlUnexpected { addr: addr.to_string(), detail: format!("first packet of {len} bytes") });
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.map_err(io)?;
    match parse_greeting(&payload) {
        Ok(Greeting::Handshake { .. }) => {
            // Best effort: never a reason to call the server not ready.
            if stream.write_all(&courtesy_login()).await.is_ok() {
                let mut reply = [0u8; 512];
                let _ = tokio::time::timeout(GOODBYE_WAIT, stream.read(&mut reply)).await;
            }
            Ok(())
        }
        Ok(Greeting::Error { code, message, .. }) => Err(ProbeError::MysqlRefused { addr: addr.to_string(), code, message }),
        Err(bad) => Err(ProbeError::MysqlUnexpected { addr: addr.to_string(), detail: bad.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload of a packet captured from a stagectl/mariadb:10.11 container (header cut).
    fn payload(packet: &[u8]) -> &[u8] {
        let len = u32::from_le_bytes([packet[0], packet[1], packet[2], 0]) as usize;
        assert_eq!(packet.len(), len + 4, "captured packet is whole");
        &packet[4..]
    }

    #[test]
    fn a_captured_mariadb_greeting_is_a_handshake() {
        let g = parse_greeting(payload(MARIADB_GREETING)).unwrap();
        match g {
            Greeting::Handshake { server_version, connection_id } => {
                assert!(server_version.contains("MariaDB"), "{server_version}");
                assert!(connection_id > 0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_captured_too_many_connections_error_is_not_ready_with_its_message() {
        let g = parse_greeting(payload(MARIADB_TOO_MANY)).unwrap();
        assert_eq!(g, Greeting::Error { code: 1040, sql_state: None, message: "Too many connections".into() });
    }

    #[test]
    fn an_error_with_a_sql_state_keeps_it_apart_from_the_message() {
        let mut p = vec![0xff, 0x69, 0x04];
        p.extend_from_slice(b"#08004Host '10.0.0.1' is blocked");
        assert_eq!(
            parse_greeting(&p).unwrap(),
            Greeting::Error { code: 1129, sql_state: Some("08004".into()), message: "Host '10.0.0.1' is blocked".into() }
        );
    }

    #[test]
    fn what_no_mysql_server_sends_is_rejected_without_panicking() {
        assert_eq!(parse_greeting(&[]), Err(BadPacket::Empty));
        assert_eq!(parse_greeting(b"HTTP/1.1 400"), Err(BadPacket::Protocol(b'H')));
        assert_eq!(parse_greeting(&[10, b'5', b'.', b'5']), Err(BadPacket::Truncated));
        assert_eq!(parse_greeting(&[10, b'5', 0, 1, 0]), Err(BadPacket::Truncated));
        assert_eq!(parse_greeting(&[0xff, 0x10]), Err(BadPacket::Truncated));
        // Every prefix of a real greeting parses or is an error, never a panic.
        let full = payload(MARIADB_GREETING);
        for n in 0..full.len() {
            let _ = parse_greeting(&full[..n]);
        }
    }

    /// A server on loopback that sends `first` to each connection, then reads what comes back.
    async fn server(first: &'static [u8]) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(first).await.unwrap();
            let mut got = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut got)).await;
            got
        });
        (addr, task)
    }

    #[tokio::test]
    async fn the_probe_is_ready_on_a_greeting_and_answers_it_with_a_login() {
        let (addr, task) = server(MARIADB_GREETING).await;
        mysql_accepting(&addr).await.unwrap();
        assert_eq!(task.await.unwrap(), courtesy_login(), "the server saw a completed handshake");
    }

    #[tokio::test]
    async fn the_probe_is_not_ready_on_an_error_packet_and_says_why() {
        let (addr, _task) = server(MARIADB_TOO_MANY).await;
        let err = mysql_accepting(&addr).await.unwrap_err();
        assert_eq!(err.to_string(), format!("mysql {addr}: error 1040: Too many connections"));
        let (addr, _task) = server(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        let err = mysql_accepting(&addr).await.unwrap_err();
        assert!(err.to_string().starts_with(&format!("mysql {addr}: not a MySQL greeting")), "{err}");
    }

    #[test]
    fn the_courtesy_login_is_one_well_formed_packet() {
        let p = courtesy_login();
        let len = u32::from_le_bytes([p[0], p[1], p[2], 0]) as usize;
        assert_eq!(p.len(), len + 4);
        assert_eq!(p[3], 1);
        assert!(p.windows(15).any(|w| w == b"stagectl-probe\0"));
    }

    /// The greeting of a stagectl/mariadb:10.11 container (MariaDB 10.11.18), captured from a raw TCP connection.
    const MARIADB_GREETING: &[u8] = &[
        0x64, 0x00, 0x00, 0x00, 0x0a, 0x35, 0x2e, 0x35, 0x2e, 0x35, 0x2d, 0x31, 0x30, 0x2e, 0x31, 0x31, 0x2e, 0x31, 0x38, 0x2d, 0x4d, 0x61,
        0x72, 0x69, 0x61, 0x44, 0x42, 0x2d, 0x30, 0x2b, 0x64, 0x65, 0x62, 0x31, 0x32, 0x75, 0x31, 0x00, 0x04, 0x00, 0x00, 0x00, 0x39, 0x74,
        0x61, 0x67, 0x62, 0x34, 0x7c, 0x37, 0x00, 0xfe, 0xf7, 0xe0, 0x02, 0x00, 0xff, 0x81, 0x15, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1d,
        0x00, 0x00, 0x00, 0x3c, 0x67, 0x73, 0x2c, 0x7b, 0x4c, 0x46, 0x5c, 0x7b, 0x75, 0x5c, 0x4d, 0x00, 0x6d, 0x79, 0x73, 0x71, 0x6c, 0x5f,
        0x6e, 0x61, 0x74, 0x69, 0x76, 0x65, 0x5f, 0x70, 0x61, 0x73, 0x73, 0x77, 0x6f, 0x72, 0x64, 0x00,
    ];

    /// What the same server sent to the 10th connection held open with max_connections = 10 (the minimum).
    const MARIADB_TOO_MANY: &[u8] = &[
        0x17, 0x00, 0x00, 0x00, 0xff, 0x10, 0x04, 0x54, 0x6f, 0x6f, 0x20, 0x6d, 0x61, 0x6e, 0x79, 0x20, 0x63, 0x6f, 0x6e, 0x6e, 0x65, 0x63,
        0x74, 0x69, 0x6f, 0x6e, 0x73,
    ];
}
