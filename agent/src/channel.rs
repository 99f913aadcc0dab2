//! One way to open a TLS gRPC channel to ingest, with or without a client
//! certificate (enrollment has none yet).

use std::time::Duration;

use lasect_proto::v1::ingest_client::IngestClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::identity::Pair;

#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {endpoint}")]
pub struct ChannelError {
    pub endpoint: String,
    #[source]
    pub source: tonic::transport::Error,
}

/// Connects to `endpoint` (`https://host:port`), verifying the server
/// against `ca_pem` and the name `server_name` (default: the endpoint's
/// host), presenting `identity` when given.
pub async fn connect(
    endpoint: &str,
    server_name: Option<&str>,
    ca_pem: &[u8],
    identity: Option<&Pair>,
    connect_timeout: Duration,
) -> Result<IngestClient<Channel>, ChannelError> {
    connect_channel(endpoint, server_name, ca_pem, identity, connect_timeout)
        .await
        .map(IngestClient::new)
}

/// The channel itself, for the other services ingest serves (`Control`).
pub async fn connect_channel(
    endpoint: &str,
    server_name: Option<&str>,
    ca_pem: &[u8],
    identity: Option<&Pair>,
    connect_timeout: Duration,
) -> Result<Channel, ChannelError> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    if let Some(pair) = identity {
        tls = tls.identity(Identity::from_pem(
            pair.cert_pem.as_bytes(),
            pair.key_pem.expose_secret().as_bytes(),
        ));
    }
    if let Some(name) = server_name {
        tls = tls.domain_name(name.to_owned());
    }
    let error = |source| ChannelError {
        endpoint: endpoint.to_owned(),
        source,
    };
    let channel = Endpoint::from_shared(endpoint.to_owned())
        .and_then(|e| e.tls_config(tls))
        .map_err(error)?
        .connect_timeout(connect_timeout)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(error)?;
    Ok(channel)
}

/// `error: cause: cause`, since tonic's transport errors say little on their own.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}
