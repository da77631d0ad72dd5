//! Typed deployments: Rust values in and out, no JSON, for pipeline stages whose both ends are
//! Rust types. Call them through a [`TypedHandle`].

use std::future::Future;
use std::marker::PhantomData;

use futures::future::BoxFuture;

use crate::agent::Deploy;
use crate::context::ReplicaContext;
use crate::error::{AgentError, Error};
use crate::handle::{AnyBox, DeploymentHandle};

/// A deployment called with a typed request (a struct, or an enum of "methods") and answering a
/// typed response.
///
/// # Examples
///
/// ```
/// use rayai_core::Callable;
/// use rayai_core::AgentError;
///
/// struct WordCount;
///
/// impl Callable for WordCount {
///     type Request = String;
///     type Response = usize;
///     async fn call(&self, text: String) -> Result<usize, AgentError> {
///         Ok(text.split_whitespace().count())
///     }
/// }
/// ```
pub trait Callable: Send + Sync + 'static {
    /// What callers send.
    type Request: Send + 'static;
    /// What the deployment answers.
    type Response: Send + 'static;
    /// Answers one request.
    fn call(
        &self,
        request: Self::Request,
    ) -> impl Future<Output = Result<Self::Response, AgentError>> + Send;

    /// Applies the deployment's `user_config`, as [`crate::Agent::reconfigure`]: after the
    /// constructor and on every running replica whenever it changes, without a restart. The
    /// default does nothing.
    fn reconfigure(
        &self,
        user_config: &serde_json::Value,
    ) -> impl Future<Output = Result<(), AgentError>> + Send {
        let _ = user_config;
        async { Ok(()) }
    }

    /// How requests and responses cross processes, when the deployment runs in another process
    /// than its callers (`RAYAI_ROLE`): as JSON, with [`Crossing::serde`], when both are serde
    /// types. `None` (the default): they stay Rust values, and a program that would have to reach
    /// this deployment in another process refuses to start, saying so.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_core::{AgentError, Callable, Crossing};
    ///
    /// struct Upper;
    /// impl Callable for Upper {
    ///     type Request = String;
    ///     type Response = String;
    ///     async fn call(&self, text: String) -> Result<String, AgentError> {
    ///         Ok(text.to_uppercase())
    ///     }
    ///     fn crossing() -> Option<Crossing<String, String>> {
    ///         Some(Crossing::serde())
    ///     }
    /// }
    /// assert!(Upper::crossing().is_some());
    /// ```
    fn crossing() -> Option<Crossing<Self::Request, Self::Response>>
    where
        Self: Sized,
    {
        None
    }
}

/// How a typed deployment's requests and responses cross processes: see
/// [`Callable::crossing`].
pub struct Crossing<Req, Resp> {
    codec: Codec,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> std::fmt::Debug for Crossing<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Crossing")
    }
}

impl<Req, Resp> Crossing<Req, Resp>
where
    Req: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    Resp: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    /// Requests and responses cross as JSON, with their serde implementations.
    pub fn serde() -> Self {
        Crossing {
            codec: Codec {
                request_to_json: to_json::<Req>,
                request_from_json: from_json::<Req>,
                response_to_json: to_json::<Resp>,
                response_from_json: from_json::<Resp>,
            },
            _types: PhantomData,
        }
    }
}

impl<Req, Resp> Crossing<Req, Resp> {
    pub(crate) fn codec(self) -> Codec {
        self.codec
    }
}

/// A typed deployment's values to and from JSON, with the types erased.
#[derive(Clone, Copy)]
pub(crate) struct Codec {
    pub(crate) request_to_json: fn(&AnyBox) -> Result<serde_json::Value, String>,
    pub(crate) request_from_json: fn(serde_json::Value) -> Result<AnyBox, String>,
    pub(crate) response_to_json: fn(&AnyBox) -> Result<serde_json::Value, String>,
    pub(crate) response_from_json: fn(serde_json::Value) -> Result<AnyBox, String>,
}

fn to_json<T: serde::Serialize + 'static>(value: &AnyBox) -> Result<serde_json::Value, String> {
    let value = value
        .downcast_ref::<T>()
        .ok_or_else(|| format!("not a {}", std::any::type_name::<T>()))?;
    serde_json::to_value(value).map_err(|e| e.to_string())
}

fn from_json<T: serde::de::DeserializeOwned + Send + 'static>(
    value: serde_json::Value,
) -> Result<AnyBox, String> {
    serde_json::from_value::<T>(value)
        .map(|v| Box::new(v) as AnyBox)
        .map_err(|e| format!("not a {}: {e}", std::any::type_name::<T>()))
}

/// [`Callable`] with its types erased, so replicas of any typed deployment share one path.
pub(crate) trait DynCallable: Send + Sync + 'static {
    fn call(&self, request: AnyBox) -> BoxFuture<'_, Result<AnyBox, Error>>;
    fn reconfigure<'a>(
        &'a self,
        user_config: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), AgentError>>;
}

impl<T: Callable> DynCallable for T {
    fn call(&self, request: AnyBox) -> BoxFuture<'_, Result<AnyBox, Error>> {
        Box::pin(async move {
            let request = request
                .downcast::<T::Request>()
                .map_err(|_| Error::WrongKind {
                    deployment: std::any::type_name::<T>().to_owned(),
                    expected: "a deployment of this request type",
                })?;
            let response = Callable::call(self, *request).await.map_err(Error::Agent)?;
            Ok(Box::new(response) as AnyBox)
        })
    }

    fn reconfigure<'a>(
        &'a self,
        user_config: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        Box::pin(Callable::reconfigure(self, user_config))
    }
}

/// A handle to a [`Callable`] deployment: `call` sends a `T::Request` and returns its
/// `T::Response`, load-balanced like any request, with no JSON in between.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), rayai_core::Error> {
/// use futures::future::BoxFuture;
/// use rayai_core::{AgentError, Callable, Controller, Deploy, Deployment, DeploymentConfig};
/// use rayai_core::{NodeResources, ReplicaContext, TypedHandle};
///
/// struct WordCount;
///
/// impl Callable for WordCount {
///     type Request = String;
///     type Response = usize;
///     async fn call(&self, text: String) -> Result<usize, AgentError> {
///         Ok(text.split_whitespace().count())
///     }
/// }
///
/// // What `#[deployment(num_cpus = 0.5)]` writes.
/// impl Deploy for WordCount {
///     fn config() -> DeploymentConfig {
///         DeploymentConfig::new("words").with_num_cpus(0.5)
///     }
///     fn construct(_ctx: ReplicaContext) -> BoxFuture<'static, Result<Self, AgentError>> {
///         Box::pin(async { Ok(WordCount) })
///     }
/// }
///
/// let controller = Controller::new(NodeResources::new(1.0, 4 << 30));
/// let handle = controller.deploy(Deployment::callable::<WordCount>()).await?;
/// let words = TypedHandle::<WordCount>::new(handle.clone());
/// assert_eq!(words.call("three little words".to_owned()).await?, 3);
/// handle.shutdown(std::time::Duration::ZERO).await;
/// # Ok(()) }
/// ```
pub struct TypedHandle<T: Callable> {
    handle: DeploymentHandle,
    _types: PhantomData<fn(T::Request) -> T::Response>,
}

impl<T: Callable> Clone for TypedHandle<T> {
    fn clone(&self) -> Self {
        TypedHandle {
            handle: self.handle.clone(),
            _types: PhantomData,
        }
    }
}

impl<T: Callable> std::fmt::Debug for TypedHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TypedHandle").field(&self.handle).finish()
    }
}

impl<T: Callable> TypedHandle<T> {
    /// A typed view of `handle`; calls fail with [`Error::WrongKind`] if it is not a `T`.
    pub fn new(handle: DeploymentHandle) -> Self {
        TypedHandle {
            handle,
            _types: PhantomData,
        }
    }

    /// Sends `request` to a replica and returns its response. Dropping the future cancels it.
    ///
    /// # Errors
    ///
    /// The deployment's error, [`Error::Backpressure`], or [`Error::WrongKind`].
    pub async fn call(&self, request: T::Request) -> Result<T::Response, Error> {
        let response = self.handle.call_any(Box::new(request)).await?;
        response
            .downcast::<T::Response>()
            .map(|r| *r)
            .map_err(|_| Error::WrongKind {
                deployment: self.handle.name().to_owned(),
                expected: "a deployment of this response type",
            })
    }

    /// The untyped handle.
    pub fn handle(&self) -> &DeploymentHandle {
        &self.handle
    }
}

impl ReplicaContext {
    /// A typed handle to the running deployment of the [`Callable`] type `T`.
    ///
    /// # Errors
    ///
    /// As [`ReplicaContext::handle`].
    pub fn typed_handle<T: Callable + Deploy>(&self) -> Result<TypedHandle<T>, Error> {
        self.handle(T::config().name()).map(TypedHandle::new)
    }
}
