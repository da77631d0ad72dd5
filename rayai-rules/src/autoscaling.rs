//! The settings of `autoscaling(...)` (Ray Serve's `autoscaling_config`), with their bounds, and
//! how `min_replicas`, `max_replicas` and `initial_replicas` must agree.

use crate::{Bound, Field, Problem};

/// The fewest replicas: 0 or more (0 lets an idle deployment scale to zero).
pub const MIN_REPLICAS: Field = Field::new("autoscaling.min_replicas", Bound::AtLeast(0));

/// The most replicas: 1 or more, and at least `min_replicas` ([`check_replica_range`]).
pub const MAX_REPLICAS: Field = Field::new("autoscaling.max_replicas", Bound::AtLeast(1));

/// Ongoing and queued requests each replica should carry: greater than 0.
pub const TARGET_ONGOING_REQUESTS: Field =
    Field::new("autoscaling.target_ongoing_requests", Bound::Positive);

/// Seconds the wish to add replicas must hold: 0 or more.
pub const UPSCALE_DELAY_S: Field = Field::new("autoscaling.upscale_delay_s", Bound::NonNegative);

/// Seconds the wish to remove replicas must hold: 0 or more.
pub const DOWNSCALE_DELAY_S: Field =
    Field::new("autoscaling.downscale_delay_s", Bound::NonNegative);

/// Seconds the wish to go from one replica to none must hold: 0 or more.
pub const DOWNSCALE_TO_ZERO_DELAY_S: Field =
    Field::new("autoscaling.downscale_to_zero_delay_s", Bound::NonNegative);

/// Replicas to start with: 0 or more, and from `min_replicas` to `max_replicas`
/// ([`check_replica_range`]).
pub const INITIAL_REPLICAS: Field = Field::new("autoscaling.initial_replicas", Bound::AtLeast(0));

/// Checks that `max` is at least `min`, and then that `initial`, when given, is between them.
///
/// # Errors
///
/// [`Problem::MaxBelowMin`] or [`Problem::InitialOutOfRange`].
///
/// # Examples
///
/// ```
/// use rayai_rules::autoscaling::check_replica_range;
///
/// assert!(check_replica_range(0, 4, Some(2)).is_ok());
/// assert!(check_replica_range(1, 4, Some(5)).is_err());
/// ```
pub fn check_replica_range(min: u32, max: u32, initial: Option<u32>) -> Result<(), Problem> {
    if max < min {
        return Err(Problem::MaxBelowMin { min });
    }
    match initial {
        Some(initial) if !(min..=max).contains(&initial) => {
            Err(Problem::InitialOutOfRange { min, max })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_below_min_is_refused_before_initial_is_looked_at() {
        assert_eq!(
            check_replica_range(3, 2, Some(9)),
            Err(Problem::MaxBelowMin { min: 3 })
        );
    }

    #[test]
    fn initial_must_be_within_min_and_max() {
        assert_eq!(check_replica_range(1, 4, None), Ok(()));
        assert_eq!(check_replica_range(1, 4, Some(1)), Ok(()));
        assert_eq!(check_replica_range(1, 4, Some(4)), Ok(()));
        assert_eq!(
            check_replica_range(1, 4, Some(0)),
            Err(Problem::InitialOutOfRange { min: 1, max: 4 })
        );
    }
}
