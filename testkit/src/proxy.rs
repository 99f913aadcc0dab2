//! A TCP proxy for fault tests: forwards connections to a target until it
//! is [`cut`](ChaosProxy::cut), then behaves like a broken network until it
//! is [`restore`](ChaosProxy::restore)d.
//!
//! While cut, every forwarded connection is closed and new connections are
//! accepted but blackholed: whatever the client sends is read and thrown
//! away and nothing ever comes back, so the client sees a hung peer (its
//! handshake or call times out) rather than a clean refusal. `restore`
//! closes the blackholed connections, so their clients notice and reconnect,
//! and forwards new connections again. Dropping the proxy closes everything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::HarnessError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Forwarding,
    Cut,
    Closed,
}

/// A running proxy on `127.0.0.1:<ephemeral>`; its tasks run on the tokio
/// runtime it was started in.
pub struct ChaosProxy {
    addr: SocketAddr,
    state: watch::Sender<State>,
    accept: JoinHandle<()>,
    blackholed: Arc<AtomicUsize>,
}

impl ChaosProxy {
    /// Listens on an ephemeral loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Result<Self, HarnessError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(HarnessError::io("bind the proxy"))?;
        let addr = listener
            .local_addr()
            .map_err(HarnessError::io("read the proxy address"))?;
        let (state, watcher) = watch::channel(State::Forwarding);
        let blackholed = Arc::new(AtomicUsize::new(0));
        let counter = blackholed.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(handle(client, target, watcher.clone(), counter.clone()));
            }
        });
        Ok(Self {
            addr,
            state,
            accept,
            blackholed,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every forwarded connection and blackholes new ones.
    pub fn cut(&self) {
        self.state.send_replace(State::Cut);
    }

    /// Closes the blackholed connections and forwards again.
    pub fn restore(&self) {
        self.state.send_replace(State::Forwarding);
    }

    pub fn is_cut(&self) -> bool {
        *self.state.borrow() == State::Cut
    }

    /// Connections accepted during the cut and held open right now. A
    /// client's connect can complete in the kernel before the proxy has
    /// accepted it; this tells when it has.
    pub fn blackholed(&self) -> usize {
        self.blackholed.load(Ordering::SeqCst)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.state.send_replace(State::Closed);
    }
}

async fn handle(
    mut client: TcpStream,
    target: SocketAddr,
    mut state: watch::Receiver<State>,
    blackholed: Arc<AtomicUsize>,
) {
    let now = *state.borrow_and_update();
    match now {
        State::Closed => {}
        State::Cut => {
            blackholed.fetch_add(1, Ordering::SeqCst);
            blackhole(client, state).await;
            blackholed.fetch_sub(1, Ordering::SeqCst);
        }
        State::Forwarding => {
            let Ok(mut server) = TcpStream::connect(target).await else {
                return; // target down: the client sees the connection close
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = state.wait_for(|s| *s != State::Forwarding) => {}
            }
            // Both sockets close here.
        }
    }
}

/// Reads and discards until the proxy stops being cut (or the client leaves).
async fn blackhole(mut client: TcpStream, mut state: watch::Receiver<State>) {
    let mut sink = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = client.read(&mut sink) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = state.wait_for(|s| *s != State::Cut) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::*;

    /// An echo server that counts the connections it accepted.
    async fn echo_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("echo addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut r, mut w) = conn.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        (addr, accepted)
    }

    /// Bound on each wait, so a bug fails the test instead of hanging it.
    const BOUND: Duration = Duration::from_secs(30);

    async fn echo_once(conn: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
        conn.write_all(msg).await.expect("write");
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(BOUND, conn.read_exact(&mut back))
            .await
            .expect("echo within the bound")
            .expect("read echo");
        back
    }

    /// Reads until the peer closes; what came before the close.
    async fn until_closed(conn: &mut TcpStream) -> Vec<u8> {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(BOUND, conn.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the proxy did not close the connection");
        rest
    }

    #[tokio::test]
    async fn forwards_cuts_blackholes_and_restores() {
        let (target, accepted) = echo_server().await;
        let proxy = ChaosProxy::start(target).await.expect("start proxy");

        let mut first = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(echo_once(&mut first, b"hello").await, b"hello");

        proxy.cut();
        assert!(proxy.is_cut());
        // The forwarded connection is closed under the client.
        let rest = until_closed(&mut first).await;
        assert!(rest.is_empty(), "{rest:?}");

        // A new connection is accepted but goes nowhere.
        let mut blackholed = TcpStream::connect(proxy.addr())
            .await
            .expect("accepted while cut");
        blackholed
            .write_all(b"ping")
            .await
            .expect("write into the void");
        tokio::time::timeout(BOUND, async {
            while proxy.blackholed() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the proxy accepted the connection");
        proxy.restore();
        let got = until_closed(&mut blackholed).await;
        assert!(got.is_empty(), "nothing came back through a cut: {got:?}");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "target saw only the first"
        );

        // Forwarding again.
        let mut again = TcpStream::connect(proxy.addr()).await.expect("reconnect");
        assert_eq!(echo_once(&mut again, b"back").await, b"back");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);

        drop(proxy);
        assert!(until_closed(&mut again).await.is_empty());
    }
}
