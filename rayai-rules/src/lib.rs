//! The rules that rayai's `#[agent(...)]` attribute (when the code compiles), its runtime (when a
//! deployment starts) and `rayai.toml` (when a project starts) share, written once with their
//! messages: the three accept the same values and refuse the others in the same words.
//!
//! Plain functions and types, with no dependencies, so that the procedural macro can use them as
//! well as the runtime.
//!
//! # Modules
//!
//! | Module | Rules |
//! | --- | --- |
//! | [`name`] | agent and deployment names: ASCII letters, digits, `_`, `-`, `.`; not `.` or `..` |
//! | [`memory`] | memory sizes such as `"2GB"` or `"1.5 GiB"`, and how the plan prints them |
//! | [`deployment`] | the numeric fields of a deployment (`num_cpus`, `num_replicas`, timeouts, ...) |
//! | [`autoscaling`] | the settings of `autoscaling(...)`, and how its replica counts agree |
//!
//! A [`Field`] is a key with its [`Bound`]; its checks return the value or a [`Problem`], whose
//! `Display` is the message users see.
//!
//! # Examples
//!
//! ```
//! use rayai_rules::{Problem, deployment};
//!
//! assert_eq!(deployment::NUM_REPLICAS.check_count(4), Ok(4));
//!
//! let problem = deployment::NUM_CPUS.check(0.0).unwrap_err();
//! assert_eq!(problem, Problem::OutOfBounds(deployment::NUM_CPUS));
//! assert_eq!(problem.key(), "num_cpus");
//! assert_eq!(problem.to_string(), "num_cpus must be greater than 0");
//! ```
//!
//! # Feature flags
//!
//! | flag | default | what it enables |
//! |---|---|---|
//! | (none) | | this crate has no optional features |

#![forbid(unsafe_code)]

pub mod autoscaling;
mod bound;
pub mod deployment;
pub mod memory;
pub mod name;
mod problem;

pub use bound::{Bound, Field};
pub use memory::{MemoryError, format_memory, parse_memory};
pub use name::{NameError, check_name};
pub use problem::Problem;
