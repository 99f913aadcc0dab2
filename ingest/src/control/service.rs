//! The `lasect.v1.Control` gRPC service: authenticates like `Ingest` (client
//! certificate, disabled agents refused) and hands the stream to
//! [`super::stream::serve`].

use std::pin::Pin;

use lasect_proto::v1::control_server::Control;
use lasect_proto::v1::{AgentMessage, ServerMessage};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::dispatch::Hub;
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
        let inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(super::stream::serve(
            self.hub.clone(),
            agent.as_str().to_owned(),
            inbound,
            tx,
        ));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
