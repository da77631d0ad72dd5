//! `rayai.v1.Agents`: any agent over gRPC, with the chat contract's semantics. `Chat` is
//! `POST {route_prefix}/chat` (the agent's `run`), `ChatStream` its `stream: "text"` or
//! `"events"` (the items as the SSE stream's, one message each). The agent is found by name in
//! the application the `application` metadata key names, or in any application when it is
//! not set; `data_json` is the request's `data`.

use std::sync::Arc;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use rayai_core::{DeploymentHandle, RequestContext};
use serde_json::Value;
use tonic::{Request, Response, Status};

use super::pb::{self, ChatChunk, ChatRequest, ChatResponse, StreamMode};
use super::{APPLICATION, RequestId, status_of};
use crate::service::Shared;

/// The service.
pub(crate) struct Agents {
    shared: Arc<Shared>,
}

impl Agents {
    /// The agents of the server `shared`.
    pub(crate) fn new(shared: Arc<Shared>) -> Agents {
        Agents { shared }
    }

    /// The agent `name` of the application the call names, its context and its `data`.
    fn prepare(
        &self,
        request: Request<ChatRequest>,
    ) -> Result<(DeploymentHandle, RequestContext, Value, ChatRequest), Status> {
        let application = request
            .metadata()
            .get(APPLICATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_else(|| {
                uuid::Uuid::new_v4()
                    .hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer())
                    .into()
            });
        let model_id = super::model_id(request.metadata().as_ref())?;
        let message = request.into_inner();
        if message.agent.is_empty() {
            return Err(Status::invalid_argument(
                "`agent` is empty: name the agent to call",
            ));
        }
        let snapshot = self.shared.controller.snapshot();
        let handle = if application.is_empty() {
            snapshot.deployment(&message.agent).cloned()
        } else {
            let Some(app) = snapshot.application(&application) else {
                let names: Vec<&str> = snapshot.applications().map(|a| a.name()).collect();
                return Err(Status::not_found(format!(
                    "Application \"{application}\" not found. Available applications: {}",
                    super::listing(&names)
                )));
            };
            app.deployments()
                .iter()
                .find(|d| d.name() == message.agent)
                .cloned()
        };
        let Some(handle) = handle.filter(|h| h.kind() == rayai_core::DeploymentKind::Agent) else {
            let agents: Vec<&str> = snapshot
                .deployments()
                .into_iter()
                .filter(|d| d.kind() == rayai_core::DeploymentKind::Agent)
                .map(|d| d.name())
                .collect();
            return Err(Status::not_found(format!(
                "no agent `{}`{}; agents: {}",
                message.agent,
                if application.is_empty() {
                    String::new()
                } else {
                    format!(" in application \"{application}\"")
                },
                super::listing(&agents)
            )));
        };
        let data = if message.data_json.trim().is_empty() {
            Value::Object(serde_json::Map::new())
        } else {
            serde_json::from_str(&message.data_json)
                .map_err(|e| Status::invalid_argument(format!("`data_json` is not JSON: {e}")))?
        };
        let session = if message.session_id.is_empty() {
            "default".to_owned()
        } else {
            message.session_id.clone()
        };
        let mut ctx = RequestContext::new(request_id, session);
        if let Some(model_id) = model_id {
            ctx = ctx.with_multiplexed_model_id(model_id);
        }
        Ok((handle, ctx, data, message))
    }
}

#[tonic::async_trait]
impl pb::agents_server::Agents for Agents {
    async fn chat(&self, request: Request<ChatRequest>) -> Result<Response<ChatResponse>, Status> {
        let (handle, ctx, data, message) = self.prepare(request)?;
        let session_id = ctx.session_id().to_owned();
        let result = handle
            .call_with(ctx, data)
            .await
            .map_err(|e| status_of(&e))?;
        let _ = message;
        Ok(Response::new(ChatResponse {
            result_json: result.to_string(),
            session_id,
        }))
    }

    type ChatStreamStream = BoxStream<'static, Result<ChatChunk, Status>>;

    async fn chat_stream(
        &self,
        request: Request<ChatRequest>,
    ) -> Result<Response<Self::ChatStreamStream>, Status> {
        let (handle, ctx, data, message) = self.prepare(request)?;
        let stream: Self::ChatStreamStream = match message.stream() {
            StreamMode::Events => handle
                .stream_events(ctx, data)
                .await
                .map_err(|e| status_of(&e))?
                .map(|item| match item {
                    Ok(event) => Ok(ChatChunk {
                        item: Some(pb::chat_chunk::Item::EventJson(event.to_string())),
                    }),
                    Err(e) => Err(status_of(&e)),
                })
                .boxed(),
            StreamMode::Text | StreamMode::Unspecified => handle
                .stream_text(ctx, data)
                .await
                .map_err(|e| status_of(&e))?
                .map(|item| match item {
                    Ok(text) => Ok(ChatChunk {
                        item: Some(pb::chat_chunk::Item::Text(text)),
                    }),
                    Err(e) => Err(status_of(&e)),
                })
                .boxed(),
        };
        Ok(Response::new(stream))
    }
}
