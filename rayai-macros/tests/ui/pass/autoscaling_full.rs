use std::time::Duration;

use rayai::agent;

#[agent(
    autoscaling(
        min_replicas = 0,
        max_replicas = 4,
        target_ongoing_requests = 3,
        upscale_delay_s = 1.5,
        downscale_delay_s = 5,
        initial_replicas = 1,
    ),
    health_check_period_s = 2,
    health_check_timeout_s = 0.25,
    graceful_shutdown_timeout_s = 0
)]
#[derive(Default)]
struct Scaled;

// Only the bounds: everything else is the runtime's default.
#[agent(autoscaling(min_replicas = 2, max_replicas = 2))]
#[derive(Default)]
struct Bounds;

macro_rules! echo_impls {
    ($($ty:ty),*) => {$(
        impl rayai::Agent for $ty {
            async fn run(&self, data: rayai::Value) -> Result<rayai::Value, rayai::AgentError> {
                Ok(data)
            }
        }
    )*};
}
echo_impls!(Scaled, Bounds);

fn main() {
    let config = <Scaled as rayai::Deploy>::config();
    let autoscaling = config.autoscaling().expect("autoscaling is set");
    assert_eq!(autoscaling.min_replicas, 0);
    assert_eq!(autoscaling.max_replicas, 4);
    assert_eq!(autoscaling.target_ongoing_requests, 3.0);
    assert_eq!(autoscaling.upscale_delay, Duration::from_millis(1500));
    assert_eq!(autoscaling.downscale_delay, Duration::from_secs(5));
    assert_eq!(autoscaling.initial_replicas, Some(1));
    assert_eq!(config.health_check_period(), Duration::from_secs(2));
    assert_eq!(config.health_check_timeout(), Duration::from_millis(250));
    assert_eq!(config.graceful_shutdown_timeout(), Duration::ZERO);

    let config = <Bounds as rayai::Deploy>::config();
    assert_eq!(
        config.autoscaling(),
        Some(&rayai::AutoscalingConfig::new(2, 2, 2.0))
    );
    let defaults = rayai::DeploymentConfig::new("bounds");
    assert_eq!(config.health_check_period(), defaults.health_check_period());
    assert_eq!(
        config.health_check_timeout(),
        defaults.health_check_timeout()
    );
    assert_eq!(
        config.graceful_shutdown_timeout(),
        defaults.graceful_shutdown_timeout()
    );
}
