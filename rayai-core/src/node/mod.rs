//! The node: what this machine has ([`NodeResources`], detected or declared), where replicas
//! go ([`Scheduler`](scheduler::Scheduler): CPUs, memory, GPU ids) and the resource [`Plan`] an
//! application is checked against before it starts.
//!
//! | module | job |
//! |---|---|
//! | `resources` | [`NodeResources`], [`Gpu`], per-replica [`Resources`], the `RAYAI_*` overrides |
//! | `detect` | reading the machine: cgroups, `/proc/meminfo`, `nvidia-smi -L` (async, bounded) |
//! | `scheduler` | reservations, GPU ids, how many more replicas fit |
//! | `plan` | the "Resource Planning" table and its [`Shortfall`]s |

mod detect;
mod plan;
mod resources;
pub(crate) mod scheduler;

pub use plan::{Placement, Plan, PlanRow};
pub use resources::{Gpu, NodeResources, Resources};
pub use scheduler::Shortfall;
