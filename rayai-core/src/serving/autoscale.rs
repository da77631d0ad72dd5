//! The autoscaling decision: how many replicas a deployment should have, from the requests it is
//! serving and holding, with Ray Serve's default policy (a target of ongoing requests per replica,
//! and delays that a wish to scale must outlast before it is acted on).
//!
//! Pure logic: the caller passes in the time, so tests drive it with a fake clock.

use std::time::Duration;

use rayai_rules::{Problem, autoscaling};
use tokio::time::Instant;

/// When and how far a deployment scales on its ongoing requests (Ray Serve's `autoscaling_config`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rayai_core::AutoscalingConfig;
///
/// let config = AutoscalingConfig::new(0, 8, 4.0).with_upscale_delay(Duration::from_secs(10));
/// assert!(config.validate().is_ok());
/// assert_eq!(config.downscale_to_zero_delay, config.downscale_delay);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscalingConfig {
    /// The fewest replicas; 0 lets the deployment scale to zero when idle.
    pub min_replicas: u32,
    /// The most replicas.
    pub max_replicas: u32,
    /// Ongoing plus queued requests each replica should carry (Ray Serve's default: 2).
    pub target_ongoing_requests: f64,
    /// How long the wish to scale up must hold before replicas are added (default 30 s).
    pub upscale_delay: Duration,
    /// How long the wish to scale down must hold before replicas are removed (default 600 s).
    pub downscale_delay: Duration,
    /// How long the wish to go from one replica to none must hold (default: `downscale_delay`).
    pub downscale_to_zero_delay: Duration,
    /// Replicas to start with; `None` starts with `min_replicas`.
    pub initial_replicas: Option<u32>,
}

impl AutoscalingConfig {
    /// Ray Serve's default target of ongoing requests per replica.
    pub const DEFAULT_TARGET_ONGOING_REQUESTS: f64 = 2.0;
    /// Ray Serve's default upscale delay.
    pub const DEFAULT_UPSCALE_DELAY: Duration = Duration::from_secs(30);
    /// Ray Serve's default downscale delay.
    pub const DEFAULT_DOWNSCALE_DELAY: Duration = Duration::from_secs(600);

    /// Scales between `min` and `max` replicas, aiming at `target` ongoing requests per replica,
    /// with the default delays.
    pub fn new(min: u32, max: u32, target: f64) -> Self {
        AutoscalingConfig {
            min_replicas: min,
            max_replicas: max,
            target_ongoing_requests: target,
            upscale_delay: Self::DEFAULT_UPSCALE_DELAY,
            downscale_delay: Self::DEFAULT_DOWNSCALE_DELAY,
            downscale_to_zero_delay: Self::DEFAULT_DOWNSCALE_DELAY,
            initial_replicas: None,
        }
    }

    /// What Ray Serve's `num_replicas = "auto"` means: 1 to 100 replicas, 2 ongoing requests each.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_core::AutoscalingConfig;
    ///
    /// let auto = AutoscalingConfig::auto();
    /// assert_eq!((auto.min_replicas, auto.max_replicas), (1, 100));
    /// assert_eq!(auto.target_ongoing_requests, 2.0);
    /// ```
    pub fn auto() -> Self {
        Self::new(1, 100, Self::DEFAULT_TARGET_ONGOING_REQUESTS)
    }

    /// Sets the fewest replicas.
    #[must_use]
    pub fn with_min_replicas(mut self, n: u32) -> Self {
        self.min_replicas = n;
        self
    }

    /// Sets the most replicas.
    #[must_use]
    pub fn with_max_replicas(mut self, n: u32) -> Self {
        self.max_replicas = n;
        self
    }

    /// Sets the ongoing requests each replica should carry.
    #[must_use]
    pub fn with_target_ongoing_requests(mut self, target: f64) -> Self {
        self.target_ongoing_requests = target;
        self
    }

    /// Sets how long the wish to scale up must hold.
    #[must_use]
    pub fn with_upscale_delay(mut self, delay: Duration) -> Self {
        self.upscale_delay = delay;
        self
    }

    /// Sets how long the wish to scale down must hold.
    ///
    /// The delay to zero follows it while it still equals the old downscale delay (it defaults to
    /// the same value); set it after this with [`with_downscale_to_zero_delay`] to differ.
    ///
    /// [`with_downscale_to_zero_delay`]: AutoscalingConfig::with_downscale_to_zero_delay
    #[must_use]
    pub fn with_downscale_delay(mut self, delay: Duration) -> Self {
        if self.downscale_to_zero_delay == self.downscale_delay {
            self.downscale_to_zero_delay = delay;
        }
        self.downscale_delay = delay;
        self
    }

    /// Sets how long the wish to go from one replica to none must hold.
    #[must_use]
    pub fn with_downscale_to_zero_delay(mut self, delay: Duration) -> Self {
        self.downscale_to_zero_delay = delay;
        self
    }

    /// Sets the replicas to start with.
    #[must_use]
    pub fn with_initial_replicas(mut self, n: u32) -> Self {
        self.initial_replicas = Some(n);
        self
    }

    /// The replicas to start with: `initial_replicas`, else `min_replicas`.
    pub fn start_replicas(&self) -> u32 {
        self.initial_replicas.unwrap_or(self.min_replicas)
    }

    /// Checks the values the type system does not.
    ///
    /// # Errors
    ///
    /// A sentence naming the first bad value: `max_replicas` of 0, `min_replicas` above
    /// `max_replicas`, a `target_ongoing_requests` that is not a positive number, or
    /// `initial_replicas` outside `min_replicas..=max_replicas`.
    pub fn validate(&self) -> Result<(), Problem> {
        // The counts are `u32`s and the delays `Duration`s: never negative.
        autoscaling::MAX_REPLICAS.check_count(self.max_replicas)?;
        autoscaling::check_replica_range(
            self.min_replicas,
            self.max_replicas,
            self.initial_replicas,
        )?;
        autoscaling::TARGET_ONGOING_REQUESTS.check(self.target_ongoing_requests)?;
        Ok(())
    }

    /// Replicas the demand asks for, within `min_replicas..=max_replicas`.
    fn wanted(&self, demand: f64) -> u32 {
        let raw = if demand > 0.0 {
            // A float-to-int `as` saturates (and maps NaN to 0), which is what we want here.
            (demand / self.target_ongoing_requests).ceil() as u32
        } else {
            0
        };
        raw.max(self.min_replicas).min(self.max_replicas)
    }
}

/// One answer of the autoscaler: how many replicas, and why when it cannot have them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The replicas the deployment should have now (the current count while a delay runs).
    pub desired: u32,
    /// Why `desired` is less than the demand asks for, when the node's resources limit it.
    pub reason: Option<String>,
}

/// Which way a pending wish to scale goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

/// Ray Serve's default autoscaling policy for one deployment, fed by the controller's loop.
///
/// Keeps the wish to scale that has not been acted on yet and since when it has held; a wish
/// that changes direction, or goes away, starts over.
///
/// The first request to an idle deployment brings a replica up at once, but more replicas come
/// only once the load has held for the upscale delay (see the tests).
#[derive(Debug, Clone)]
pub(crate) struct Autoscaler {
    config: AutoscalingConfig,
    pending: Option<(Direction, Instant)>,
}

impl Autoscaler {
    /// An autoscaler with no wish pending.
    pub fn new(config: AutoscalingConfig) -> Self {
        Autoscaler {
            config,
            pending: None,
        }
    }

    /// How many replicas the deployment should have at `now`.
    ///
    /// `current` is the replica count the controller last settled on (its target, counting
    /// replicas still starting), `total_ongoing` the requests the replicas are serving, `queued`
    /// those waiting for a replica, and `resource_cap` the most replicas of this deployment the
    /// node can hold.
    ///
    /// The demand asks for `ceil((total_ongoing + queued) / target_ongoing_requests)` replicas,
    /// kept within `min_replicas..=max_replicas` and at most `resource_cap` (when that binds, the
    /// decision's `reason` says so, even if `min_replicas` is above the cap). Then:
    ///
    /// - from zero replicas with any demand, one replica (or `min_replicas`) at once;
    /// - a `current` outside the bounds is brought back inside them at once;
    /// - a scale up happens once the wish to go up has held for `upscale_delay`, a scale down once
    ///   the wish to go down has held for `downscale_delay`; the last replica goes once the wish
    ///   for none has held for `downscale_to_zero_delay` (from more than one replica, the way to
    ///   zero is a scale down to one, then to zero);
    /// - until then `desired` is `current`; a wish that goes away or turns around starts over,
    ///   and so does each change this returns.
    ///
    /// Call [`AutoscalingConfig::validate`] first: with `min_replicas > max_replicas` the result
    /// is bounded by `max_replicas`.
    pub fn decide(
        &mut self,
        now: Instant,
        current: u32,
        total_ongoing: f64,
        queued: u32,
        resource_cap: u32,
    ) -> Decision {
        let config = &self.config;
        // `f64::max` drops a NaN, so a bad reading counts as no demand.
        let demand = total_ongoing.max(0.0) + f64::from(queued);
        let wanted = config.wanted(demand);
        let cap_reason = |wanted: u32| {
            if config.min_replicas > resource_cap {
                format!(
                    "limited to {resource_cap} replicas by node resources \
                     (min_replicas is {})",
                    config.min_replicas
                )
            } else {
                format!("limited to {resource_cap} replicas by node resources (wanted {wanted})")
            }
        };

        // Out of bounds (a changed config, a node that lost resources): back inside at once.
        let lower = config.min_replicas.min(resource_cap);
        let upper = config.max_replicas.min(resource_cap);
        if current < lower || current > upper {
            self.pending = None;
            let desired = current.max(lower).min(upper);
            let unlimited = current
                .max(config.min_replicas)
                .min(config.max_replicas)
                .max(wanted);
            let reason =
                (unlimited > desired && desired == resource_cap).then(|| cap_reason(unlimited));
            return Decision { desired, reason };
        }

        // The first request must not wait for the upscale delay.
        if current == 0 && demand > 0.0 {
            self.pending = None;
            let unlimited = config.min_replicas.max(1).min(config.max_replicas);
            let first = unlimited.min(resource_cap);
            let reason = (unlimited > first).then(|| cap_reason(unlimited));
            return Decision {
                desired: first,
                reason,
            };
        }

        let mut target = wanted.min(resource_cap);
        let reason = (wanted > target).then(|| cap_reason(wanted));
        let (direction, delay) = match target.cmp(&current) {
            std::cmp::Ordering::Equal => {
                self.pending = None;
                return Decision {
                    desired: current,
                    reason,
                };
            }
            std::cmp::Ordering::Greater => (Direction::Up, config.upscale_delay),
            std::cmp::Ordering::Less if target == 0 && current == 1 => {
                (Direction::Down, config.downscale_to_zero_delay)
            }
            std::cmp::Ordering::Less => {
                target = target.max(1);
                (Direction::Down, config.downscale_delay)
            }
        };

        let since = match self.pending {
            Some((pending, since)) if pending == direction => since,
            _ => now,
        };
        if now.saturating_duration_since(since) >= delay {
            self.pending = None;
            Decision {
                desired: target,
                reason,
            }
        } else {
            self.pending = Some((direction, since));
            Decision {
                desired: current,
                reason: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_from_zero_at_once_and_up_only_after_the_delay() {
        let mut scaler = Autoscaler::new(AutoscalingConfig::new(0, 10, 2.0));
        let t0 = Instant::now();
        assert_eq!(scaler.decide(t0, 0, 1.0, 0, 8).desired, 1);
        assert_eq!(scaler.decide(t0, 1, 6.0, 0, 8).desired, 1);
        assert_eq!(
            scaler
                .decide(t0 + Duration::from_secs(30), 1, 6.0, 0, 8)
                .desired,
            3
        );
    }

    const CAP: u32 = 1000;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// 0..=10 replicas, 2 requests each, 30 s up, 600 s down, 600 s to zero.
    fn scaler() -> Autoscaler {
        Autoscaler::new(AutoscalingConfig::new(0, 10, 2.0))
    }

    #[test]
    fn scales_up_only_after_the_upscale_delay_holds() {
        let mut s = scaler();
        let t0 = Instant::now();
        assert_eq!(s.decide(t0, 1, 8.0, 0, CAP).desired, 1);
        assert_eq!(s.decide(t0 + secs(10), 1, 8.0, 0, CAP).desired, 1);
        assert_eq!(s.decide(t0 + secs(29), 1, 8.0, 0, CAP).desired, 1);
        // Queued requests count as demand too: 6 ongoing + 4 queued -> 5 replicas.
        let d = s.decide(t0 + secs(30), 1, 6.0, 4, CAP);
        assert_eq!(
            d,
            Decision {
                desired: 5,
                reason: None
            }
        );
        // Each change starts the clock over.
        assert_eq!(s.decide(t0 + secs(31), 5, 20.0, 0, CAP).desired, 5);
        assert_eq!(s.decide(t0 + secs(61), 5, 20.0, 0, CAP).desired, 10);
    }

    #[test]
    fn a_dip_resets_the_upscale_timer() {
        let mut s = scaler();
        let t0 = Instant::now();
        assert_eq!(s.decide(t0, 2, 10.0, 0, CAP).desired, 2);
        // Load drops back to what 2 replicas carry: the wish to go up is gone.
        assert_eq!(s.decide(t0 + secs(20), 2, 4.0, 0, CAP).desired, 2);
        assert_eq!(s.decide(t0 + secs(25), 2, 10.0, 0, CAP).desired, 2);
        assert_eq!(s.decide(t0 + secs(50), 2, 10.0, 0, CAP).desired, 2);
        assert_eq!(s.decide(t0 + secs(55), 2, 10.0, 0, CAP).desired, 5);
    }

    #[test]
    fn a_turn_around_resets_the_timer() {
        let mut s = scaler();
        let t0 = Instant::now();
        assert_eq!(s.decide(t0, 4, 2.0, 0, CAP).desired, 4);
        assert_eq!(s.decide(t0 + secs(500), 4, 20.0, 0, CAP).desired, 4);
        // Down again: 600 s counted from here, not from t0.
        assert_eq!(s.decide(t0 + secs(510), 4, 2.0, 0, CAP).desired, 4);
        assert_eq!(s.decide(t0 + secs(1100), 4, 2.0, 0, CAP).desired, 4);
        assert_eq!(s.decide(t0 + secs(1110), 4, 2.0, 0, CAP).desired, 1);
    }

    #[test]
    fn scales_down_after_the_downscale_delay() {
        let mut s = scaler();
        let t0 = Instant::now();
        assert_eq!(s.decide(t0, 6, 4.0, 0, CAP).desired, 6);
        assert_eq!(s.decide(t0 + secs(300), 6, 5.0, 0, CAP).desired, 6);
        assert_eq!(s.decide(t0 + secs(599), 6, 4.0, 0, CAP).desired, 6);
        // The size reached is the one the demand asks for when the delay is over.
        assert_eq!(s.decide(t0 + secs(600), 6, 6.0, 0, CAP).desired, 3);
    }

    #[test]
    fn scale_from_zero_is_immediate() {
        let mut s = scaler();
        let t0 = Instant::now();
        assert_eq!(s.decide(t0, 0, 0.0, 0, CAP).desired, 0);
        assert_eq!(s.decide(t0, 0, 0.0, 1, CAP).desired, 1);
        // Further replicas wait for the upscale delay like any other.
        assert_eq!(s.decide(t0 + secs(1), 1, 0.0, 9, CAP).desired, 1);
        assert_eq!(s.decide(t0 + secs(31), 1, 0.0, 9, CAP).desired, 5);

        let mut s = Autoscaler::new(AutoscalingConfig::new(0, 10, 2.0).with_min_replicas(0));
        assert_eq!(s.decide(t0, 0, 0.5, 0, CAP).desired, 1);
    }

    #[test]
    fn scales_to_zero_after_its_delay_with_no_traffic() {
        let config = AutoscalingConfig::new(0, 10, 2.0)
            .with_downscale_delay(secs(60))
            .with_downscale_to_zero_delay(secs(300));
        let mut s = Autoscaler::new(config);
        let t0 = Instant::now();
        assert_eq!(s.decide(t0, 1, 0.0, 0, CAP).desired, 1);
        assert_eq!(s.decide(t0 + secs(60), 1, 0.0, 0, CAP).desired, 1);
        assert_eq!(s.decide(t0 + secs(299), 1, 0.0, 0, CAP).desired, 1);
        assert_eq!(s.decide(t0 + secs(300), 1, 0.0, 0, CAP).desired, 0);
        assert_eq!(s.decide(t0 + secs(301), 0, 0.0, 0, CAP).desired, 0);
    }

    #[test]
    fn scales_to_zero_from_many_by_way_of_one() {
        let config = AutoscalingConfig::new(0, 10, 2.0)
            .with_downscale_delay(secs(60))
            .with_downscale_to_zero_delay(secs(300));
        let mut s = Autoscaler::new(config);
        let t0 = Instant::now();
        assert_eq!(s.decide(t0, 4, 0.0, 0, CAP).desired, 4);
        assert_eq!(s.decide(t0 + secs(60), 4, 0.0, 0, CAP).desired, 1);
        assert_eq!(s.decide(t0 + secs(61), 1, 0.0, 0, CAP).desired, 1);
        assert_eq!(s.decide(t0 + secs(360), 1, 0.0, 0, CAP).desired, 1);
        assert_eq!(s.decide(t0 + secs(361), 1, 0.0, 0, CAP).desired, 0);
    }

    #[test]
    fn the_delay_to_zero_follows_the_downscale_delay_by_default() {
        let config = AutoscalingConfig::new(0, 4, 2.0).with_downscale_delay(secs(90));
        assert_eq!(config.downscale_to_zero_delay, secs(90));
        let config = config.with_downscale_to_zero_delay(secs(5));
        assert_eq!(
            config.with_downscale_delay(secs(7)).downscale_to_zero_delay,
            secs(5)
        );
    }

    #[test]
    fn clamps_to_min_and_max() {
        let config = AutoscalingConfig::new(2, 4, 2.0)
            .with_upscale_delay(Duration::ZERO)
            .with_downscale_delay(Duration::ZERO);
        let mut s = Autoscaler::new(config);
        let t0 = Instant::now();
        assert_eq!(s.decide(t0, 2, 100.0, 50, CAP).desired, 4);
        assert_eq!(s.decide(t0, 4, 0.0, 0, CAP).desired, 2);
        assert_eq!(s.decide(t0, 2, 0.0, 0, CAP).desired, 2);
        // A current count outside the bounds (say, after a config change) comes back at once.
        let mut s = scaler();
        let mut s2 = Autoscaler::new(AutoscalingConfig::new(3, 5, 2.0));
        assert_eq!(s.decide(t0, 12, 100.0, 0, CAP).desired, 10);
        assert_eq!(s2.decide(t0, 1, 0.0, 0, CAP).desired, 3);
        assert_eq!(s2.decide(t0, 0, 0.0, 0, CAP).desired, 3);
    }

    #[test]
    fn capped_by_resources_with_a_reason() {
        let config = AutoscalingConfig::new(1, 10, 2.0).with_upscale_delay(Duration::ZERO);
        let mut s = Autoscaler::new(config);
        let t0 = Instant::now();
        let d = s.decide(t0, 1, 10.0, 0, 3);
        assert_eq!(d.desired, 3);
        assert_eq!(
            d.reason.as_deref(),
            Some("limited to 3 replicas by node resources (wanted 5)")
        );
        // Still at the cap, still wanting more: still said.
        let d = s.decide(t0, 3, 10.0, 0, 3);
        assert_eq!(d.desired, 3);
        assert!(d.reason.is_some());
        // Demand the node can hold: no reason.
        assert_eq!(
            s.decide(t0, 3, 6.0, 0, 3),
            Decision {
                desired: 3,
                reason: None
            }
        );
        // Fewer resources than replicas running: down to the cap at once.
        let d = s.decide(t0, 3, 6.0, 0, 2);
        assert_eq!(d.desired, 2);
        assert!(d.reason.unwrap().contains("limited to 2 replicas"));
    }

    #[test]
    fn a_min_above_the_cap_gets_the_cap_with_a_reason() {
        let mut s = Autoscaler::new(AutoscalingConfig::new(5, 10, 2.0));
        let t0 = Instant::now();
        for current in [0, 2, 3, 7] {
            let d = s.decide(t0, current, 0.0, 0, 3);
            assert_eq!(d.desired, 3, "from {current}");
            assert_eq!(
                d.reason.as_deref(),
                Some("limited to 3 replicas by node resources (min_replicas is 5)"),
                "from {current}"
            );
        }
        let mut s = Autoscaler::new(AutoscalingConfig::new(0, 10, 2.0));
        let d = s.decide(t0, 0, 1.0, 0, 0);
        assert_eq!(d.desired, 0);
        assert!(d.reason.is_some());
    }

    #[test]
    fn auto_is_rays_num_replicas_auto() {
        let auto = AutoscalingConfig::auto();
        assert_eq!(auto.min_replicas, 1);
        assert_eq!(auto.max_replicas, 100);
        assert_eq!(auto.target_ongoing_requests, 2.0);
        assert_eq!(auto.upscale_delay, secs(30));
        assert_eq!(auto.downscale_delay, secs(600));
        assert_eq!(auto.downscale_to_zero_delay, secs(600));
        assert_eq!(auto.initial_replicas, None);
        assert_eq!(auto.start_replicas(), 1);
        assert!(auto.validate().is_ok());
    }

    #[test]
    fn validate_rejects_bad_bounds_and_targets() {
        let err = AutoscalingConfig::new(5, 4, 2.0).validate().unwrap_err();
        assert!(err.to_string().contains("min_replicas"), "{err}");
        let err = AutoscalingConfig::new(0, 0, 2.0).validate().unwrap_err();
        assert!(err.to_string().contains("max_replicas"), "{err}");
        for target in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = AutoscalingConfig::new(0, 4, target).validate().unwrap_err();
            assert!(err.to_string().contains("target_ongoing_requests"), "{err}");
        }
        let err = AutoscalingConfig::new(1, 4, 2.0)
            .with_initial_replicas(9)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("initial_replicas"), "{err}");
        assert!(AutoscalingConfig::new(0, 1, 0.5).validate().is_ok());
    }

    #[test]
    fn bad_readings_count_as_no_demand() {
        let config = AutoscalingConfig::new(0, 4, 2.0).with_downscale_delay(Duration::ZERO);
        let mut s = Autoscaler::new(config);
        let t0 = Instant::now();
        assert_eq!(s.decide(t0, 0, f64::NAN, 0, CAP).desired, 0);
        assert_eq!(s.decide(t0, 0, -3.0, 0, CAP).desired, 0);
        assert_eq!(s.decide(t0, 2, f64::NAN, 0, CAP).desired, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn works_on_paused_tokio_time() {
        let mut s = scaler();
        let start = Instant::now();
        assert_eq!(s.decide(Instant::now(), 1, 8.0, 0, CAP).desired, 1);
        tokio::time::advance(secs(30)).await;
        assert_eq!(Instant::now() - start, secs(30));
        assert_eq!(s.decide(Instant::now(), 1, 8.0, 0, CAP).desired, 4);
    }
}
