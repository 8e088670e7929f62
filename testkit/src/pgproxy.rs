//! A TCP proxy in front of PostgreSQL (or PgBouncer) that reads the frontend side of the
//! wire protocol: it records the SQL of every statement the functions send (`Parse` and
//! simple `Query` messages) and counts round trips (each time the client speaks again
//! after the server has answered). Tests compare statement sequences with it; the
//! benchmark counts each function's round trips.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy saw.
#[derive(Default)]
pub struct Wire {
    statements: std::sync::Mutex<Vec<String>>,
    round_trips: AtomicUsize,
}

impl Wire {
    /// The SQL of every statement sent so far, in order, whitespace squeezed.
    pub fn statements(&self) -> Vec<String> {
        self.statements
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Round trips so far, over every connection.
    pub fn round_trips(&self) -> usize {
        self.round_trips.load(Ordering::SeqCst)
    }

    /// Forgets what was seen (between the requests a test compares).
    pub fn clear(&self) {
        if let Ok(mut s) = self.statements.lock() {
            s.clear();
        }
        self.round_trips.store(0, Ordering::SeqCst);
    }

    fn record(&self, sql: &str) {
        let squeezed = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Ok(mut s) = self.statements.lock() {
            s.push(squeezed);
        }
    }
}

/// Starts a proxy to `target` (`host:port`); returns its address and what it sees.
pub async fn start(target: String) -> (std::net::SocketAddr, Arc<Wire>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let wire = Arc::new(Wire::default());
    let seen = wire.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (target, seen) = (target.clone(), seen.clone());
            tokio::spawn(async move {
                if let Ok(server) = TcpStream::connect(&target).await {
                    relay(client, server, seen).await;
                }
            });
        }
    });
    (addr, wire)
}

async fn relay(client: TcpStream, server: TcpStream, wire: Arc<Wire>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Set when the server has spoken since the client last did: the client's next
    // bytes begin a new round trip.
    let answered = Arc::new(AtomicBool::new(true));
    let heard = answered.clone();
    let downstream = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = server_read.read(&mut buf).await {
            if n == 0 || client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            heard.store(true, Ordering::SeqCst);
        }
    });
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending = Vec::new();
    let mut started = false;
    while let Ok(n) = client_read.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if answered.swap(false, Ordering::SeqCst) {
            wire.round_trips.fetch_add(1, Ordering::SeqCst);
        }
        pending.extend_from_slice(&buf[..n]);
        parse(&mut pending, &mut started, &wire);
        if server_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    downstream.abort();
}

/// Reads the complete frontend messages at the front of `pending`, recording the SQL
/// of `Parse` ('P') and `Query` ('Q'); the startup message has no type byte.
fn parse(pending: &mut Vec<u8>, started: &mut bool, wire: &Wire) {
    loop {
        let header = if *started { 5 } else { 4 };
        if pending.len() < header {
            return;
        }
        let at = header - 4;
        let len = u32::from_be_bytes([
            pending[at],
            pending[at + 1],
            pending[at + 2],
            pending[at + 3],
        ]) as usize;
        let total = at + len;
        if pending.len() < total {
            return;
        }
        let message: Vec<u8> = pending.drain(..total).collect();
        if !*started {
            // An SSLRequest (80877103) is followed by the real startup message.
            let code = u32::from_be_bytes([message[4], message[5], message[6], message[7]]);
            *started = code != 80_877_103;
            continue;
        }
        let body = &message[5..];
        let sql = match message[0] {
            // Parse: the statement's name, then its SQL.
            b'P' => body
                .iter()
                .position(|b| *b == 0)
                .map(|end| &body[end + 1..]),
            b'Q' => Some(body),
            _ => None,
        };
        if let Some(sql) = sql {
            let end = sql.iter().position(|b| *b == 0).unwrap_or(sql.len());
            wire.record(&String::from_utf8_lossy(&sql[..end]));
        }
    }
}
