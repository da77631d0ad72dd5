//! [`Problem`]: a value that breaks a rule, with the message users see.

use std::fmt;

use crate::Field;
use crate::name::NameError;

/// A value that breaks one of the rules. Its `Display` is the message users see, from
/// `#[agent(...)]`, from the runtime and from `rayai.toml` alike.
///
/// # Examples
///
/// ```
/// use rayai_rules::{Problem, autoscaling};
///
/// let problem = autoscaling::check_replica_range(4, 2, None).unwrap_err();
/// assert_eq!(problem, Problem::MaxBelowMin { min: 4 });
/// assert_eq!(problem.key(), "autoscaling.max_replicas");
/// assert_eq!(problem.to_string(), "max_replicas must be at least min_replicas (4)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The value is outside its field's bound: "num_cpus must be greater than 0".
    OutOfBounds(Field),
    /// A count above the most the field holds: "num_replicas must be at most 4294967295".
    AboveMax {
        /// The field.
        field: Field,
        /// The most it holds.
        max: u32,
    },
    /// A number too large to use: infinite, more seconds than a `Duration` holds, or an integer
    /// literal beyond 64 bits: "`num_cpus` is too large".
    TooLarge(Field),
    /// `max_replicas` below `min_replicas`: "max_replicas must be at least min_replicas (4)".
    MaxBelowMin {
        /// The `min_replicas` given.
        min: u32,
    },
    /// `initial_replicas` outside `min_replicas..=max_replicas`:
    /// "initial_replicas must be between min_replicas (1) and max_replicas (4)".
    InitialOutOfRange {
        /// The `min_replicas` given.
        min: u32,
        /// The `max_replicas` given.
        max: u32,
    },
    /// A name that is not URL-safe: "the name is not URL-safe: it contains ' '; use only ...".
    Name(NameError),
}

impl Problem {
    /// The key of the value at fault, as [`Field::key`] spells it: `num_cpus`,
    /// `autoscaling.max_replicas`, `name`.
    pub fn key(&self) -> &'static str {
        match self {
            Problem::OutOfBounds(field)
            | Problem::AboveMax { field, .. }
            | Problem::TooLarge(field) => field.key(),
            Problem::MaxBelowMin { .. } => crate::autoscaling::MAX_REPLICAS.key(),
            Problem::InitialOutOfRange { .. } => crate::autoscaling::INITIAL_REPLICAS.key(),
            Problem::Name(_) => "name",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::OutOfBounds(field) => {
                write!(f, "{} must be {}", field.name(), field.bound())
            }
            Problem::AboveMax { field, max } => write!(f, "{} must be at most {max}", field.name()),
            Problem::TooLarge(field) => write!(f, "`{}` is too large", field.name()),
            Problem::MaxBelowMin { min } => {
                write!(f, "max_replicas must be at least min_replicas ({min})")
            }
            Problem::InitialOutOfRange { min, max } => write!(
                f,
                "initial_replicas must be between min_replicas ({min}) and max_replicas ({max})"
            ),
            Problem::Name(reason) => write!(f, "the name is not URL-safe: {reason}"),
        }
    }
}

impl std::error::Error for Problem {}

impl From<NameError> for Problem {
    fn from(reason: NameError) -> Self {
        Problem::Name(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{autoscaling, deployment};

    #[test]
    fn messages_name_the_field_as_the_attribute_spells_it() {
        let cases = [
            (
                Problem::OutOfBounds(deployment::NUM_CPUS),
                "num_cpus must be greater than 0",
            ),
            (
                Problem::OutOfBounds(autoscaling::MIN_REPLICAS),
                "min_replicas must be at least 0",
            ),
            (
                Problem::AboveMax {
                    field: deployment::NUM_REPLICAS,
                    max: u32::MAX,
                },
                "num_replicas must be at most 4294967295",
            ),
            (
                Problem::TooLarge(autoscaling::DOWNSCALE_DELAY_S),
                "`downscale_delay_s` is too large",
            ),
            (
                Problem::InitialOutOfRange { min: 1, max: 4 },
                "initial_replicas must be between min_replicas (1) and max_replicas (4)",
            ),
            (
                Problem::Name(NameError::Empty),
                "the name is not URL-safe: it is empty; use only ASCII letters, digits, `_`, `-` and `.`",
            ),
        ];
        for (problem, message) in cases {
            assert_eq!(problem.to_string(), message);
        }
    }

    #[test]
    fn the_key_is_the_full_path_of_the_value_at_fault() {
        assert_eq!(Problem::OutOfBounds(deployment::NUM_GPUS).key(), "num_gpus");
        assert_eq!(
            Problem::TooLarge(autoscaling::UPSCALE_DELAY_S).key(),
            "autoscaling.upscale_delay_s"
        );
        assert_eq!(
            Problem::InitialOutOfRange { min: 0, max: 1 }.key(),
            "autoscaling.initial_replicas"
        );
        assert_eq!(Problem::from(NameError::DotSegment).key(), "name");
    }
}
