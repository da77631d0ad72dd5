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
/// `Default`, else a [`Missing`] marker that [`constructor`] turns into one clear error
/// (autoref specialisation on `&&Maker<T>`, resolved on the concrete type the macro names:
/// method lookup tries the impl for `&Maker<T>`, then, autoref'd, for `&&Maker<T>`, then,
/// dereferenced, for `Maker<T>`).
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

impl<T: Construct + Send + 'static> ViaConstruct<T> for &Maker<T> {
    fn construct(&self, ctx: ReplicaContext) -> BoxFuture<'static, Result<T, AgentError>> {
        Box::pin(T::construct(ctx))
    }
}

/// Construction through `Default` (when there is nothing to load).
pub trait ViaDefault<T> {
    /// Builds `T` with `Default`.
    fn construct(&self, ctx: ReplicaContext) -> BoxFuture<'static, Result<T, AgentError>>;
}

impl<T: Default + Send + 'static> ViaDefault<T> for &&Maker<T> {
    fn construct(&self, _ctx: ReplicaContext) -> BoxFuture<'static, Result<T, AgentError>> {
        Box::pin(async { Ok(T::default()) })
    }
}

/// No constructor at all: what [`constructor`] refuses, with a message that says what to do.
pub trait ViaNothing<T> {
    /// A marker standing for the missing constructor.
    fn construct(&self, ctx: ReplicaContext) -> Missing<T>;
}

impl<T> ViaNothing<T> for Maker<T> {
    fn construct(&self, _ctx: ReplicaContext) -> Missing<T> {
        Missing(PhantomData)
    }
}

/// Stands for a type with neither `Default` nor [`Construct`].
pub struct Missing<T>(PhantomData<fn() -> T>);

/// The future that builds a `T`; a [`Missing`] constructor is not one.
#[diagnostic::on_unimplemented(
    message = "`{T}` has no constructor: derive `Default` or implement `Construct`",
    label = "rayai builds one `{T}` per replica, and needs to know how",
    note = "add `#[derive(Default)]` when there is nothing to load",
    note = "or implement `rayai::Construct` (`async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError>`) to load a model or open a client per replica"
)]
pub trait Constructor<T> {
    /// The constructor's future.
    fn into_future(self) -> BoxFuture<'static, Result<T, AgentError>>;
}

#[diagnostic::do_not_recommend]
impl<T> Constructor<T> for BoxFuture<'static, Result<T, AgentError>> {
    fn into_future(self) -> BoxFuture<'static, Result<T, AgentError>> {
        self
    }
}

/// The future that builds a `T` (or the error that says how to give `T` a constructor).
pub fn constructor<T, C: Constructor<T>>(chosen: C) -> BoxFuture<'static, Result<T, AgentError>> {
    chosen.into_future()
}
