//! [`Bound`], the range a number must be in, and [`Field`], a configuration key with its bound
//! and the checks that apply it.

use std::fmt;
use std::time::Duration;

use crate::Problem;

/// The range a field's value must be in. Its `Display` ends the sentence "`<field>` must be ...".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bound {
    /// Greater than 0: "greater than 0".
    Positive,
    /// 0 or more: "0 or greater".
    NonNegative,
    /// At least this (for counts): "at least 1".
    AtLeast(u32),
    /// 0 or more, or `-1` for no limit (for limits): "0 or more, or -1 for no limit".
    NonNegativeOrNoLimit,
}

impl Bound {
    /// Whether `value` is within the bound; NaN never is.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_rules::Bound;
    ///
    /// assert!(Bound::Positive.admits(0.5));
    /// assert!(!Bound::Positive.admits(0.0));
    /// assert!(Bound::NonNegative.admits(0.0));
    /// assert!(!Bound::NonNegative.admits(f64::NAN));
    /// ```
    pub fn admits(self, value: f64) -> bool {
        match self {
            Bound::Positive => value > 0.0,
            Bound::NonNegative => value >= 0.0,
            Bound::AtLeast(min) => value >= f64::from(min),
            Bound::NonNegativeOrNoLimit => value >= 0.0 || value == -1.0,
        }
    }

    /// Whether the integer `value` is within the bound.
    fn admits_integer(self, value: i128) -> bool {
        match self {
            Bound::Positive => value > 0,
            Bound::NonNegative => value >= 0,
            Bound::AtLeast(min) => value >= i128::from(min),
            Bound::NonNegativeOrNoLimit => value >= -1,
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Positive => f.write_str("greater than 0"),
            Bound::NonNegative => f.write_str("0 or greater"),
            Bound::AtLeast(min) => write!(f, "at least {min}"),
            Bound::NonNegativeOrNoLimit => f.write_str("0 or more, or -1 for no limit"),
        }
    }
}

/// A configuration key and the bound on its value, such as [`crate::deployment::NUM_CPUS`].
///
/// Its checks return the value as the runtime stores it, or the [`Problem`] with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    key: &'static str,
    bound: Bound,
}

impl Field {
    /// The field at `key`, dotted for a setting inside a table (`autoscaling.max_replicas`).
    pub const fn new(key: &'static str, bound: Bound) -> Self {
        Field { key, bound }
    }

    /// The key within a deployment's configuration: `num_cpus`, `autoscaling.max_replicas`.
    pub const fn key(self) -> &'static str {
        self.key
    }

    /// The last part of the key, as messages and `#[agent(...)]` spell it: `max_replicas`.
    pub fn name(self) -> &'static str {
        let key: &'static str = self.key;
        key.rsplit_once('.').map_or(key, |(_, name)| name)
    }

    /// The range the value must be in.
    pub const fn bound(self) -> Bound {
        self.bound
    }

    /// Checks a number: within the bound, and finite. `-0.0` comes back as `0.0`.
    ///
    /// # Errors
    ///
    /// [`Problem::OutOfBounds`] (NaN included), or [`Problem::TooLarge`] for infinity.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_rules::deployment::NUM_GPUS;
    ///
    /// assert_eq!(NUM_GPUS.check(0.5), Ok(0.5));
    /// assert_eq!(NUM_GPUS.check(-1.0).unwrap_err().to_string(), "num_gpus must be 0 or greater");
    /// ```
    pub fn check(self, value: f64) -> Result<f64, Problem> {
        if !self.bound.admits(value) {
            return Err(Problem::OutOfBounds(self));
        }
        if !value.is_finite() {
            return Err(Problem::TooLarge(self));
        }
        // `-0.0` is no CPU, no GPU, no time: store it as `0.0`.
        Ok(if value == 0.0 { 0.0 } else { value })
    }

    /// Checks a count: an integer within the bound that a `u32` holds.
    ///
    /// # Errors
    ///
    /// [`Problem::OutOfBounds`] (a negative value included), or [`Problem::AboveMax`] above
    /// `u32::MAX`.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_rules::deployment::NUM_REPLICAS;
    ///
    /// assert_eq!(NUM_REPLICAS.check_count(4u32), Ok(4));
    /// assert_eq!(NUM_REPLICAS.check_count(0u32).unwrap_err().to_string(), "num_replicas must be at least 1");
    /// ```
    pub fn check_count(self, value: impl Into<i128>) -> Result<u32, Problem> {
        let value = value.into();
        if !self.bound.admits_integer(value) || value < 0 {
            return Err(Problem::OutOfBounds(self));
        }
        u32::try_from(value).map_err(|_| Problem::AboveMax {
            field: self,
            max: u32::MAX,
        })
    }

    /// Checks a limit: `-1` is no limit (`None`) when the bound is
    /// [`Bound::NonNegativeOrNoLimit`]; any other value is a count, as in [`Field::check_count`].
    ///
    /// # Errors
    ///
    /// As [`Field::check_count`].
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_rules::deployment::MAX_QUEUED_REQUESTS;
    ///
    /// assert_eq!(MAX_QUEUED_REQUESTS.check_limit(-1), Ok(None));
    /// assert_eq!(MAX_QUEUED_REQUESTS.check_limit(10), Ok(Some(10)));
    /// assert!(MAX_QUEUED_REQUESTS.check_limit(-2).is_err());
    /// ```
    pub fn check_limit(self, value: impl Into<i128>) -> Result<Option<u32>, Problem> {
        let value = value.into();
        if value == -1 && self.bound == Bound::NonNegativeOrNoLimit {
            return Ok(None);
        }
        self.check_count(value).map(Some)
    }

    /// Checks a number of seconds: as [`Field::check`], and a `Duration` holds it.
    ///
    /// # Errors
    ///
    /// As [`Field::check`], or [`Problem::TooLarge`] for more seconds than a `Duration` holds.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rayai_rules::deployment::HEALTH_CHECK_PERIOD_S;
    ///
    /// assert_eq!(HEALTH_CHECK_PERIOD_S.check_seconds(0.5), Ok(Duration::from_millis(500)));
    /// assert!(HEALTH_CHECK_PERIOD_S.check_seconds(0.0).is_err());
    /// ```
    pub fn check_seconds(self, secs: f64) -> Result<Duration, Problem> {
        let secs = self.check(secs)?;
        Duration::try_from_secs_f64(secs).map_err(|_| Problem::TooLarge(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POSITIVE: Field = Field::new("x", Bound::Positive);
    const NON_NEGATIVE: Field = Field::new("table.y", Bound::NonNegative);
    const AT_LEAST_ONE: Field = Field::new("n", Bound::AtLeast(1));
    const LIMIT: Field = Field::new("limit", Bound::NonNegativeOrNoLimit);

    #[test]
    fn the_name_is_the_last_part_of_the_key() {
        assert_eq!(NON_NEGATIVE.key(), "table.y");
        assert_eq!(NON_NEGATIVE.name(), "y");
        assert_eq!(POSITIVE.name(), "x");
    }

    #[test]
    fn numbers_outside_the_bound_or_not_finite_are_refused() {
        assert_eq!(POSITIVE.check(0.25), Ok(0.25));
        assert_eq!(POSITIVE.check(0.0), Err(Problem::OutOfBounds(POSITIVE)));
        assert_eq!(
            POSITIVE.check(f64::NAN),
            Err(Problem::OutOfBounds(POSITIVE))
        );
        assert_eq!(
            POSITIVE.check(f64::INFINITY),
            Err(Problem::TooLarge(POSITIVE))
        );
        assert_eq!(
            NON_NEGATIVE.check(f64::NEG_INFINITY),
            Err(Problem::OutOfBounds(NON_NEGATIVE))
        );
    }

    #[test]
    fn negative_zero_comes_back_as_zero() {
        let zero = NON_NEGATIVE.check(-0.0).unwrap();
        assert!(zero == 0.0 && zero.is_sign_positive());
    }

    #[test]
    fn counts_must_be_in_the_bound_and_fit_a_u32() {
        assert_eq!(AT_LEAST_ONE.check_count(1), Ok(1));
        assert_eq!(
            AT_LEAST_ONE.check_count(0),
            Err(Problem::OutOfBounds(AT_LEAST_ONE))
        );
        assert_eq!(
            AT_LEAST_ONE.check_count(-3),
            Err(Problem::OutOfBounds(AT_LEAST_ONE))
        );
        assert_eq!(AT_LEAST_ONE.check_count(u32::MAX), Ok(u32::MAX));
        assert_eq!(
            AT_LEAST_ONE.check_count(i128::from(u32::MAX) + 1),
            Err(Problem::AboveMax {
                field: AT_LEAST_ONE,
                max: u32::MAX
            })
        );
    }

    #[test]
    fn minus_one_is_no_limit_only_for_a_limit() {
        assert_eq!(LIMIT.check_limit(-1), Ok(None));
        assert_eq!(LIMIT.check_limit(0), Ok(Some(0)));
        assert_eq!(LIMIT.check_limit(-2), Err(Problem::OutOfBounds(LIMIT)));
        assert_eq!(LIMIT.check_count(-1), Err(Problem::OutOfBounds(LIMIT)));
        assert_eq!(
            AT_LEAST_ONE.check_limit(-1),
            Err(Problem::OutOfBounds(AT_LEAST_ONE))
        );
    }

    #[test]
    fn seconds_must_fit_a_duration() {
        assert_eq!(NON_NEGATIVE.check_seconds(0.0), Ok(Duration::ZERO));
        assert_eq!(
            NON_NEGATIVE.check_seconds(2.5),
            Ok(Duration::from_millis(2500))
        );
        assert_eq!(
            NON_NEGATIVE.check_seconds(1e300),
            Err(Problem::TooLarge(NON_NEGATIVE))
        );
        assert_eq!(
            NON_NEGATIVE.check_seconds(-1.0),
            Err(Problem::OutOfBounds(NON_NEGATIVE))
        );
    }

    #[test]
    fn bounds_read_as_the_end_of_a_sentence() {
        assert_eq!(Bound::Positive.to_string(), "greater than 0");
        assert_eq!(Bound::NonNegative.to_string(), "0 or greater");
        assert_eq!(Bound::AtLeast(1).to_string(), "at least 1");
        assert_eq!(
            Bound::NonNegativeOrNoLimit.to_string(),
            "0 or more, or -1 for no limit"
        );
    }
}
