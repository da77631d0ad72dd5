//! Errors and overload reach the caller typed: a callee's error is `DeploymentError::Agent`, a
//! busy callee refuses with `DeploymentError::Backpressure`, and a dropped call cancels the
//! callee's work.

use std::sync::atomic::AtomicBool;

use rayai::prelude::*;
use rayai::{DeploymentError, TypedHandle};

use crate::common::eventually;
use crate::fixtures::{
    FailingAgent, ONE_AT_A_TIME_GATE, OneAtATime, Refuser, SHARED_SLEEPER_CANCELLED,
    SHARED_SLEEPER_STARTED, SLEEPER_CANCELLED, SLEEPER_STARTED, SharedSleeper, Sleeper,
};
use crate::{EXCHANGE_TIMEOUT, deploy_locally, handle, ongoing, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callee_error_reaches_the_caller_as_agent_error() {
    let app = App::new().callable::<Refuser>().agent::<FailingAgent>();
    let controller = deploy_locally(app).await;

    let refuser = TypedHandle::<Refuser>::new(handle(&controller, "refuser"));
    match within(EXCHANGE_TIMEOUT, "refuser", refuser.call(())).await {
        Err(DeploymentError::Agent(e)) => assert_eq!(e.message(), "nope"),
        other => panic!("expected DeploymentError::Agent(\"nope\"), got {other:?}"),
    }

    let failing = handle(&controller, "failing_agent");
    match within(EXCHANGE_TIMEOUT, "failing_agent", failing.call(json!({}))).await {
        Err(DeploymentError::Agent(e)) => assert_eq!(e.message(), "agent says nope"),
        other => panic!("expected DeploymentError::Agent(\"agent says nope\"), got {other:?}"),
    }

    // An error is an answer, not a dead replica.
    assert_eq!(refuser.handle().replicas()[0].last_error, None);
    assert_eq!(ongoing(refuser.handle()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_callee_rejects_a_second_call_with_backpressure() {
    let controller = deploy_locally(App::new().callable::<OneAtATime>()).await;
    let callee = TypedHandle::<OneAtATime>::new(handle(&controller, "one_at_a_time"));

    let first = tokio::spawn({
        let callee = callee.clone();
        async move { callee.call(1).await }
    });
    eventually(
        EXCHANGE_TIMEOUT,
        "the first call to be in flight",
        || async { ongoing(callee.handle()) == 1 },
    )
    .await;

    let second = within(EXCHANGE_TIMEOUT, "the second call", callee.call(2)).await;
    assert!(
        matches!(
            second,
            Err(DeploymentError::Backpressure { queued: 0, max: 0 })
        ),
        "{second:?}"
    );

    // The refusal left the first call alone.
    ONE_AT_A_TIME_GATE.notify_one();
    let first = within(EXCHANGE_TIMEOUT, "the first call", first)
        .await
        .expect("the first call's task");
    assert_eq!(first.expect("the first call answers"), 2);
    assert_eq!(callee.handle().queued_requests(), 0);
}

/// Starts a call to the sleeper `T` in a task, aborts the task once the call runs (`started`), and
/// waits until the sleeper's future was dropped (`cancelled`) and its slot freed.
async fn assert_dropped_call_cancels<T>(
    name: &str,
    started: &'static AtomicBool,
    cancelled: &'static AtomicBool,
) where
    T: Callable<Request = (), Response = ()> + rayai::Deploy,
{
    let controller = deploy_locally(App::new().callable::<T>()).await;
    let sleeper = TypedHandle::<T>::new(handle(&controller, name));

    let call = tokio::spawn({
        let sleeper = sleeper.clone();
        async move { sleeper.call(()).await }
    });
    // One ongoing request counts the slot reserved for the call; the callee's work may not have
    // started yet (on a replica of its own, its task may not have been polled), and work
    // cancelled before it starts drops nothing. Wait for both.
    eventually(
        EXCHANGE_TIMEOUT,
        "the call to run on the sleeper",
        || async { ongoing(sleeper.handle()) == 1 && started.load(Ordering::SeqCst) },
    )
    .await;
    assert!(!cancelled.load(Ordering::SeqCst));

    call.abort();
    eventually(
        EXCHANGE_TIMEOUT,
        "the sleeper's work to be dropped and its slot freed",
        || async { cancelled.load(Ordering::SeqCst) && ongoing(sleeper.handle()) == 0 },
    )
    .await;
    assert!(call.await.expect_err("the call was aborted").is_cancelled());
    assert_eq!(sleeper.handle().replicas()[0].last_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_call_cancels_the_callees_work() {
    assert_dropped_call_cancels::<Sleeper>("sleeper", &SLEEPER_STARTED, &SLEEPER_CANCELLED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_call_cancels_the_callees_work_in_shared_isolation() {
    assert_dropped_call_cancels::<SharedSleeper>(
        "shared_sleeper",
        &SHARED_SLEEPER_STARTED,
        &SHARED_SLEEPER_CANCELLED,
    )
    .await;
}
