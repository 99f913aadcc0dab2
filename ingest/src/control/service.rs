//! The `lasect.v1.Control` gRPC service: authenticates like `Ingest` (client
//! certificate, disabled agents refused), refuses a revoked or superseded
//! certificate and one older than the agent's open stream's (see
//! [`super::registry`]), and hands the stream to [`super::stream::serve`].

use std::pin::Pin;

use lasect_proto::v1::control_server::Control;
use lasect_proto::v1::{AgentMessage, ServerMessage};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::dispatch::Hub;
use super::registry::StreamCert;
use crate::metrics::Metrics;
use crate::revocation::Revocations;

pub struct ControlService {
    pub hub: Hub,
    pub revocations: Revocations,
    pub metrics: Metrics,
}

#[tonic::async_trait]
impl Control for ControlService {
    type OpenStream = Pin<Box<dyn Stream<Item = Result<ServerMessage, Status>> + Send + 'static>>;

    async fn open(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        let agent = crate::server::authenticate(&self.revocations, &self.metrics, &request)?;
        let cert = crate::identity::peer_cert_of(&request)
            .map_err(|e| Status::unauthenticated(crate::ErrorChain(&e).to_string()))?;
        if self.revocations.is_revoked(&cert.serial_hex) {
            tracing::warn!(%agent, serial = %cert.serial_hex, "refused a Control stream with a revoked certificate");
            return Err(Status::permission_denied(format!(
                "certificate {} of agent {agent} is revoked",
                cert.serial_hex
            )));
        }
        let cert = StreamCert {
            serial: cert.serial_hex,
            not_before: cert.not_before,
        };
        if let Err(older) = self.hub.registry.admits(agent.as_str(), &cert) {
            tracing::warn!(%agent, %older, "refused a Control stream");
            return Err(Status::failed_precondition(older.to_string()));
        }
        let inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(super::stream::serve(
            self.hub.clone(),
            agent.as_str().to_owned(),
            cert,
            inbound,
            tx,
        ));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
