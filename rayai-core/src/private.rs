//! Not public API: the support code that `#[agent(...)]` expands to.

use std::marker::PhantomData;

pub use futures::future::BoxFuture;
pub use inventory;

use crate::agent::{Agent, Construct, Deploy};
pub use crate::app::Registration;
use crate::context::ReplicaContext;
use crate::deployment::Deployment;
use crate::error::AgentError;

/// The deployment of `T`, as a function pointer for [`Registration`].
pub fn agent_deployment<T: Deploy + Agent>() -> Deployment {
    Deployment::agent::<T>()
}

/// Picks the constructor of `T` at compile time: [`Construct`] when implemented, else
/// `Default` (autoref specialisation, resolved on the concrete type the macro names).
pub struct Maker<T>(PhantomData<fn() -> T>);

impl<T> Maker<T> {
    /// A maker for `T`.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Maker(PhantomData)
    }
}

/// Construction through [`Construct`] (preferred).
pub trait ViaConstruct<T> {
    /// Builds `T` for the replica `ctx`.
    fn construct(&self, ctx: ReplicaContext) -> BoxFuture<'static, Result<T, AgentError>>;
}

impl<T: Construct + Send + 'static> ViaConstruct<T> for Maker<T> {
    fn construct(&self, ctx: ReplicaContext) -> BoxFuture<'static, Result<T, AgentError>> {
        Box::pin(T::construct(ctx))
    }
}

/// Construction through `Default` (when there is nothing to load).
pub trait ViaDefault<T> {
    /// Builds `T` with `Default`.
    fn construct(&self, ctx: ReplicaContext) -> BoxFuture<'static, Result<T, AgentError>>;
}

impl<T: Default + Send + 'static> ViaDefault<T> for &Maker<T> {
    fn construct(&self, _ctx: ReplicaContext) -> BoxFuture<'static, Result<T, AgentError>> {
        Box::pin(async { Ok(T::default()) })
    }
}
