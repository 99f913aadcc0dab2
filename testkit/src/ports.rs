use std::net::TcpListener;

/// A TCP port on 127.0.0.1 that was free a moment ago. Another process can
/// take it before the caller binds it; callers that start servers retry.
pub fn free_port() -> u16 {
    match TcpListener::bind(("127.0.0.1", 0)).and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        // Not reachable on a machine with a loopback interface.
        Err(e) => panic!("cannot bind an ephemeral port on 127.0.0.1: {e}"),
    }
}
