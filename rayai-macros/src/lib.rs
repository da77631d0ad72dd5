//! The `#[agent]` attribute of rayai: turns a struct into a deployable agent.
//!
//! Use it through the `rayai` crate (`use rayai::prelude::*;` or `rayai::agent`), not this one:
//! the code it generates names items of `rayai`.
//!
//! ```ignore
//! use rayai::prelude::*;
//!
//! #[agent(num_cpus = 1, memory = "2GB", num_replicas = 4)]
//! #[derive(Default)]
//! struct Echo;
//!
//! impl Agent for Echo {
//!     async fn run(&self, data: Value) -> Result<Value, AgentError> {
//!         Ok(data)
//!     }
//! }
//! ```
//!
//! (The crate's examples are compiled as its `tests/ui` cases, which depend on `rayai` as a
//! dev-dependency: a doctest here could not.)
//!
//! # Arguments
//!
//! All are optional and written `key = value`, separated by commas, except `autoscaling(...)`,
//! which holds its own `key = value` settings in parentheses. An argument that is not given takes
//! the runtime's default.
//!
//! | Argument | Value | Meaning |
//! | --- | --- | --- |
//! | `name` | string: ASCII letters, digits, `_`, `-`, `.`; not `.` or `..` | The agent's name, as in `POST /agents/{name}/chat`. Default: `<name>` for a struct in `agents/<name>.rs` or `agents/<name>/mod.rs`, else the struct's name in snake case (`EchoAgent` is `echo_agent`). |
//! | `num_cpus` | number greater than 0 (`1`, `0.5`) | CPUs reserved for each replica. |
//! | `num_gpus` | number, 0 or more (`1`, `0.5`) | GPUs reserved for each replica. |
//! | `memory` | string: a number and a unit (`"2GB"`, `"512 MiB"`, `"1.5g"`) | Memory reserved for each replica. Units K, M, G, T, with or without `B`/`iB`, any case, all binary (`"1KB"` is 1024 bytes). |
//! | `num_replicas` | integer, 1 or more, or `"auto"` | How many replicas to run. `"auto"` scales them on load with Ray Serve's defaults: 1 to 100 replicas, 2 ongoing requests each. Not with `autoscaling`. |
//! | `autoscaling` | `autoscaling(min_replicas = 0, max_replicas = 4, ...)`: the settings below | Scale the replicas on load, between the bounds given. Not with `num_replicas`. |
//! | `max_ongoing_requests` | integer, 1 or more | Requests one replica handles at once. |
//! | `max_queued_requests` | integer, 0 or more, or `-1` for no limit | Requests that wait for a replica before new ones are refused. |
//! | `backpressure_retry_after_s` | integer, 0 or more | This deployment's overload answers `429 Too Many Requests` with this `Retry-After` instead of the `503` (Ray's per-deployment choice). |
//! | `health_check_period_s` | number of seconds, greater than 0 (`10`, `0.5`) | How often each replica's health is checked. |
//! | `health_check_timeout_s` | number of seconds, greater than 0 | How long a health check may take before it counts as failed. |
//! | `isolation` | `"auto"`, `"thread"` or `"shared"` | Where replicas run their code. `"auto"` (default): each replica has threads of its own, and its calls run in place on the server's workers while they are quick (no hop between threads); all but one worker at most run replica code at once, and a replica whose code blocks or computes without awaiting (one poll over 100 ms, or three in a row over 10 ms) sends its calls to its own threads from then on, so code that blocks never stalls the server. `"thread"`: every call on the replica's own threads (a hop per call; code that blocks stalls only that replica). `"shared"`: on the server's runtime with no hop and no guard, for code that never blocks. |
//! | `graceful_shutdown_timeout_s` | number of seconds, 0 or more | How long a stopping replica may finish its requests before it is stopped. |
//! | `crate` | string holding a path (`"rayai_core"`) | Where the generated code finds the runtime; `::rayai` unless given. For code that reaches rayai under another name. |
//!
//! The settings of `autoscaling(...)` (Ray Serve's `autoscaling_config`):
//!
//! | Setting | Value | Meaning |
//! | --- | --- | --- |
//! | `min_replicas` | integer, 0 or more; required | The fewest replicas; 0 lets an idle agent scale to zero. |
//! | `max_replicas` | integer, 1 or more and at least `min_replicas`; required | The most replicas. |
//! | `target_ongoing_requests` | number greater than 0 | Ongoing and queued requests each replica should carry; 2 unless given. |
//! | `upscale_delay_s` | number of seconds, 0 or more | How long the wish to add replicas must hold before they are added. |
//! | `downscale_delay_s` | number of seconds, 0 or more | How long the wish to remove replicas must hold before they are removed. |
//! | `initial_replicas` | integer from `min_replicas` to `max_replicas` | Replicas to start with; `min_replicas` unless given. |
//!
//! ```ignore
//! #[agent(
//!     autoscaling(min_replicas = 0, max_replicas = 8, target_ongoing_requests = 4, downscale_delay_s = 60),
//!     health_check_period_s = 5,
//!     graceful_shutdown_timeout_s = 30,
//! )]
//! #[derive(Default)]
//! struct Search;
//! ```
//!
//! Every argument is checked when the code compiles, and every mistake is reported at once, each
//! at the token it is about: an unknown or repeated key (inside `autoscaling(...)` too), a value of
//! the wrong type or out of range, a memory size that does not parse, a name that is not URL-safe,
//! a missing `min_replicas` or `max_replicas`, bounds that disagree, or `num_replicas` given
//! together with `autoscaling(...)`.
//!
//! # What it generates
//!
//! The struct stays as it was written. Next to it come an implementation of `rayai::Deploy`, whose
//! `config()` holds the arguments above and whose `construct` builds one replica (with the
//! struct's `rayai::Construct` implementation if it has one, else with `Default`), and the
//! agent's registration, so that `rayai serve` finds it by name. The struct may have named fields,
//! tuple fields or none, but no generic parameters or lifetimes.
//!
//! # Feature flags
//!
//! This crate has no feature flags.

extern crate proc_macro;

mod attr;
mod expand;
mod naming;

use proc_macro::TokenStream;

/// Makes a struct an agent that rayai can deploy: see the [crate docs](crate) for the arguments.
///
/// # Examples
///
/// ```ignore
/// #[rayai::agent(num_gpus = 1, memory = "16GB", max_ongoing_requests = 2)]
/// struct Summarizer {
///     model: Model,
/// }
///
/// impl rayai::Construct for Summarizer {
///     async fn construct(ctx: rayai::ReplicaContext) -> Result<Self, rayai::AgentError> {
///         Ok(Summarizer { model: Model::load(ctx.gpu_ids()).await? })
///     }
/// }
/// ```
#[proc_macro_attribute]
pub fn agent(args: TokenStream, item: TokenStream) -> TokenStream {
    let source_file = proc_macro::Span::call_site().local_file();
    expand::agent(args.into(), item.into(), source_file.as_deref()).into()
}

/// Gives a handler type (one implementing `rayai::Handler`) its deployment configuration: the
/// same arguments as `#[agent]`, without registering it as an agent.
///
/// # Examples
///
/// ```ignore
/// #[rayai::deployment(num_replicas = 2, num_cpus = 0.5)]
/// #[derive(Default)]
/// struct Hello;
///
/// impl rayai::Handler for Hello {
///     async fn call(&self, _req: rayai::Request) -> rayai::Response {
///         rayai::Response::new(rayai::handler::full("hello"))
///     }
/// }
/// ```
#[proc_macro_attribute]
pub fn deployment(args: TokenStream, item: TokenStream) -> TokenStream {
    let source_file = proc_macro::Span::call_site().local_file();
    expand::expand(
        expand::Kind::Deployment,
        args.into(),
        item.into(),
        source_file.as_deref(),
    )
    .into()
}
