//! Unit tests of `attr.rs`: argument parsing and its errors.

use quote::quote;

use super::*;

/// Parses `tokens`, expecting no error.
fn ok(tokens: TokenStream) -> Args {
    let errors = Errors::new();
    let args = parse(tokens, &errors);
    if let Err(error) = errors.check() {
        panic!("unexpected error: {error}");
    }
    args
}

/// Parses `tokens`, expecting errors, and returns their messages in order.
fn messages(tokens: TokenStream) -> Vec<String> {
    let errors = Errors::new();
    parse(tokens, &errors);
    let error = errors.check().expect_err("expected an error");
    error.into_iter().map(|e| e.to_string()).collect()
}

fn value<T: Clone>(arg: &Slot<T>) -> T {
    arg.value
        .as_ref()
        .expect("argument not stored")
        .value
        .clone()
}

#[test]
fn no_arguments_leave_everything_to_the_runtime() {
    let args = ok(quote!());
    assert!(!args.name.given() && !args.num_cpus.given() && !args.krate.given());
    assert!(!args.autoscaling.given() && !args.health_check_period_s.given());
    assert!(args.memory_bytes.value.is_none() && args.max_queued_requests.value.is_none());
}

#[test]
fn parses_every_argument() {
    let args = ok(quote!(
        name = "echo-2",
        num_cpus = 1,
        num_gpus = 0.5,
        memory = "2GB",
        num_replicas = 4,
        max_ongoing_requests = 5,
        max_queued_requests = 10,
        backpressure_retry_after_s = 3,
        health_check_period_s = 10,
        health_check_timeout_s = 2.5,
        graceful_shutdown_timeout_s = 0,
        crate = "rayai_core",
    ));
    assert_eq!(value(&args.name), "echo-2");
    assert_eq!(value(&args.num_cpus), 1.0);
    assert_eq!(value(&args.num_gpus), 0.5);
    assert_eq!(value(&args.memory_bytes), 2 << 30);
    assert_eq!(value(&args.num_replicas), Replicas::Fixed(4));
    assert_eq!(value(&args.max_ongoing_requests), 5);
    assert_eq!(value(&args.max_queued_requests), Some(10));
    assert_eq!(value(&args.backpressure_retry_after_s), 3);
    assert_eq!(value(&args.health_check_period_s), 10.0);
    assert_eq!(value(&args.health_check_timeout_s), 2.5);
    assert_eq!(value(&args.graceful_shutdown_timeout_s), 0.0);
    let krate = value(&args.krate);
    assert_eq!(quote!(#krate).to_string(), "rayai_core");
}

#[test]
fn isolation_is_auto_thread_or_shared() {
    assert_eq!(
        value(&ok(quote!(isolation = "auto")).isolation),
        Isolation::Auto
    );
    assert_eq!(
        value(&ok(quote!(isolation = "thread")).isolation),
        Isolation::Thread
    );
    assert_eq!(
        value(&ok(quote!(isolation = "shared")).isolation),
        Isolation::Shared
    );
    let errors = messages(quote!(isolation = "process"));
    for mode in ["\"auto\"", "\"thread\"", "\"shared\""] {
        assert!(errors[0].contains(mode), "{errors:?}");
    }
}

#[test]
fn minus_one_queued_requests_means_no_limit() {
    let args = ok(quote!(max_queued_requests = -1));
    assert_eq!(value(&args.max_queued_requests), None);
    let args = ok(quote!(max_queued_requests = 0));
    assert_eq!(value(&args.max_queued_requests), Some(0));
}

#[test]
fn zero_gpus_is_allowed_and_never_negative_zero() {
    let args = ok(quote!(num_gpus = -0.0));
    assert!(value(&args.num_gpus).is_sign_positive());
    assert_eq!(value(&ok(quote!(num_gpus = 0)).num_gpus), 0.0);
}

#[test]
fn accepts_literal_suffixes_and_separators() {
    let args = ok(quote!(
        num_cpus = 1.5f64,
        num_replicas = 1_000u32,
        num_gpus = 2_f64
    ));
    assert_eq!(value(&args.num_cpus), 1.5);
    assert_eq!(value(&args.num_replicas), Replicas::Fixed(1000));
    assert_eq!(value(&args.num_gpus), 2.0);
}

#[test]
fn crate_path_may_be_absolute() {
    let krate = value(&ok(quote!(crate = "::my::rayai")).krate);
    assert_eq!(quote!(#krate).to_string(), ":: my :: rayai");
}

#[test]
fn unknown_key_lists_the_valid_ones() {
    let messages = messages(quote!(replicas = 2));
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0].starts_with("unknown argument `replicas`"),
        "{messages:?}"
    );
    for key in KEYS {
        assert!(messages[0].contains(&format!("`{key}`")), "{messages:?}");
    }
}

#[test]
fn duplicate_key_is_reported_once_per_repeat() {
    let messages = messages(quote!(num_cpus = 1, num_cpus = 2, num_cpus = 3));
    assert_eq!(
        messages,
        [
            "duplicate argument `num_cpus`",
            "duplicate argument `num_cpus`"
        ]
    );
}

#[test]
fn duplicate_is_checked_for_every_key() {
    for key in KEYS {
        let arg = match *key {
            "name" => format!("{key} = \"a\""),
            "memory" => format!("{key} = \"1GB\""),
            "crate" => format!("{key} = \"rayai\""),
            "isolation" => format!("{key} = \"shared\""),
            "autoscaling" => format!("{key}(min_replicas = 1, max_replicas = 2)"),
            _ => format!("{key} = 1"),
        };
        let tokens = format!("{arg}, {arg}").parse().unwrap();
        assert_eq!(messages(tokens), [format!("duplicate argument `{key}`")]);
    }
}

#[test]
fn repeating_a_wrong_argument_is_still_a_duplicate() {
    let messages = messages(quote!(num_replicas = 0, num_replicas = 2));
    assert_eq!(
        messages,
        [
            "num_replicas must be at least 1",
            "duplicate argument `num_replicas`"
        ]
    );
}

#[test]
fn wrong_literal_types_name_the_expected_type() {
    let messages = messages(quote!(
        num_replicas = "4",
        num_cpus = "one",
        memory = 2048,
        name = echo,
        max_ongoing_requests = 1.5,
        crate = rayai,
    ));
    assert_eq!(
        messages,
        [
            "`num_replicas` takes an integer >= 1 or \"auto\", \
             such as `num_replicas = 4` or `num_replicas = \"auto\"`",
            "`num_cpus` expects a number, such as `num_cpus = 1` or `num_cpus = 0.5`",
            "`memory` expects a string, such as `memory = \"2GB\"`",
            "`name` expects a string, such as `name = \"echo\"`",
            "`max_ongoing_requests` expects an integer, such as `max_ongoing_requests = 4`",
            "`crate` expects a string, such as `crate = \"rayai\"`",
        ]
    );
}

#[test]
fn out_of_range_numbers_say_the_range() {
    assert_eq!(
        messages(quote!(
            num_cpus = 0,
            num_gpus = -1,
            num_replicas = 0,
            max_ongoing_requests = -3,
            max_queued_requests = -2,
        )),
        [
            "num_cpus must be greater than 0",
            "num_gpus must be 0 or greater",
            "num_replicas must be at least 1",
            "max_ongoing_requests must be at least 1",
            "max_queued_requests must be 0 or more, or -1 for no limit",
        ]
    );
    assert_eq!(
        messages(quote!(num_replicas = 4294967296)),
        ["num_replicas must be at most 4294967295"]
    );
}

#[test]
fn negative_cpus_are_refused() {
    assert_eq!(
        messages(quote!(num_cpus = -1.0)),
        ["num_cpus must be greater than 0"]
    );
}

#[test]
fn infinite_and_huge_numbers_are_refused() {
    assert_eq!(
        messages(quote!(num_cpus = 1e999)),
        ["`num_cpus` is too large"]
    );
    assert_eq!(
        messages(quote!(num_replicas = 99999999999999999999999)),
        ["`num_replicas` is too large"]
    );
}

#[test]
fn memory_errors_use_the_runtime_messages() {
    let cases = ["2 potatoes", "", "-1GB", "1024", "99999999999999999999GB"];
    for memory in cases {
        let expected = parse_memory(memory).unwrap_err().message();
        assert_eq!(messages(quote!(memory = #memory)), [expected], "{memory}");
    }
}

#[test]
fn bad_names_say_which_characters_are_allowed() {
    for name in ["has space", "", ".", "..", "a/b"] {
        let messages = messages(quote!(name = #name));
        assert_eq!(messages.len(), 1, "{name}");
        assert!(
            messages[0].starts_with("invalid agent name"),
            "{messages:?}"
        );
        assert!(
            messages[0].contains("ASCII letters, digits"),
            "{messages:?}"
        );
    }
}

#[test]
fn bad_crate_path_is_refused() {
    assert_eq!(
        messages(quote!(crate = "not a path")),
        ["`crate` must be a path, such as \"rayai\" or \"::rayai\""]
    );
}

#[test]
fn every_error_is_collected() {
    let messages = messages(quote!(
        foo = 1,
        num_cpus = 0,
        memory = "2 potatoes",
        num_replicas = "4",
        foo = 2,
    ));
    assert_eq!(messages.len(), 5, "{messages:?}");
}

#[test]
fn syntax_errors_stop_at_the_first() {
    assert_eq!(messages(quote!(num_cpus)), ["expected `num_cpus = ...`"]);
    assert_eq!(
        messages(quote!("echo")),
        ["expected an argument such as `num_replicas = 2`"]
    );
    assert_eq!(
        messages(quote!(num_cpus = 1 num_gpus = 2)),
        ["expected `,`"]
    );
}

#[test]
fn values_from_macro_rules_fragments_are_unwrapped() {
    let group = proc_macro2::Group::new(proc_macro2::Delimiter::None, quote!(3));
    let args = ok(quote!(num_replicas = #group));
    assert_eq!(value(&args.num_replicas), Replicas::Fixed(3));
}

#[test]
fn num_replicas_auto_is_its_own_value() {
    assert_eq!(
        value(&ok(quote!(num_replicas = "auto")).num_replicas),
        Replicas::Auto
    );
}

#[test]
fn num_replicas_takes_no_other_string_or_type() {
    let expected = "`num_replicas` takes an integer >= 1 or \"auto\", \
                    such as `num_replicas = 4` or `num_replicas = \"auto\"`";
    for value in [
        quote!("Auto"),
        quote!("4"),
        quote!(""),
        quote!(1.5),
        quote!(auto),
    ] {
        assert_eq!(
            messages(quote!(num_replicas = #value)),
            [expected],
            "{value}"
        );
    }
}

/// The checked `autoscaling(...)` of `tokens`.
fn autoscaling_of(tokens: TokenStream) -> Autoscaling {
    value(&ok(tokens).autoscaling)
}

#[test]
fn parses_every_autoscaling_setting() {
    let a = autoscaling_of(quote!(autoscaling(
        min_replicas = 0,
        max_replicas = 4,
        target_ongoing_requests = 2.5,
        upscale_delay_s = 1,
        downscale_delay_s = 5.5,
        initial_replicas = 1,
    )));
    assert_eq!(a.min_replicas.value, 0);
    assert_eq!(a.max_replicas.value, 4);
    assert_eq!(a.target_ongoing_requests.map(|t| t.value), Some(2.5));
    assert_eq!(a.upscale_delay_s.map(|d| d.value), Some(1.0));
    assert_eq!(a.downscale_delay_s.map(|d| d.value), Some(5.5));
    assert_eq!(a.initial_replicas.map(|n| n.value), Some(1));
}

#[test]
fn autoscaling_needs_only_its_bounds() {
    let a = autoscaling_of(quote!(autoscaling(max_replicas = 2, min_replicas = 2)));
    assert_eq!((a.min_replicas.value, a.max_replicas.value), (2, 2));
    assert!(a.target_ongoing_requests.is_none() && a.upscale_delay_s.is_none());
    assert!(a.downscale_delay_s.is_none() && a.initial_replicas.is_none());
    let a = autoscaling_of(quote!(r#autoscaling(r#min_replicas = 0, max_replicas = 1,)));
    assert_eq!((a.min_replicas.value, a.max_replicas.value), (0, 1));
}

#[test]
fn initial_replicas_may_be_either_bound() {
    for initial in [1u32, 3] {
        let a = autoscaling_of(quote!(autoscaling(
            min_replicas = 1,
            max_replicas = 3,
            initial_replicas = #initial
        )));
        assert_eq!(a.initial_replicas.map(|n| n.value), Some(initial));
    }
}

#[test]
fn autoscaling_must_be_written_with_parentheses() {
    let expected = "expected `autoscaling(...)`, such as \
                    `autoscaling(min_replicas = 1, max_replicas = 4)`";
    assert_eq!(messages(quote!(autoscaling = 4)), [expected]);
    assert_eq!(
        messages(quote!(autoscaling = "auto", num_cpus = 0)),
        [expected, "num_cpus must be greater than 0"]
    );
    // Without `=` or parentheses it is a syntax error, which stops there.
    assert_eq!(messages(quote!(autoscaling, num_cpus = 0)), [expected]);
}

#[test]
fn other_arguments_take_no_parentheses() {
    assert_eq!(
        messages(quote!(num_cpus(1), memory("2GB"))),
        ["expected `num_cpus = ...`", "expected `memory = ...`"]
    );
    assert_eq!(
        messages(quote!(autoscaling(min_replicas(1), max_replicas = 2))),
        ["expected `min_replicas = ...`"]
    );
}

#[test]
fn missing_autoscaling_bounds_are_named() {
    let needs = |name: &str| {
        format!(
            "`autoscaling(...)` needs `{name}`, such as \
             `autoscaling(min_replicas = 1, max_replicas = 4)`"
        )
    };
    assert_eq!(
        messages(quote!(autoscaling(min_replicas = 1))),
        [needs("max_replicas")]
    );
    assert_eq!(
        messages(quote!(autoscaling(max_replicas = 1, initial_replicas = 1))),
        [needs("min_replicas")]
    );
    assert_eq!(
        messages(quote!(autoscaling())),
        [needs("min_replicas"), needs("max_replicas")]
    );
    // A bound that is given but wrong is not also missing.
    assert_eq!(
        messages(quote!(autoscaling(min_replicas = -1, max_replicas = 0))),
        [
            "min_replicas must be at least 0",
            "max_replicas must be at least 1"
        ]
    );
}

#[test]
fn autoscaling_bounds_must_agree() {
    assert_eq!(
        messages(quote!(autoscaling(min_replicas = 3, max_replicas = 2))),
        ["max_replicas must be at least min_replicas (3)"]
    );
    for initial in [0u32, 5] {
        assert_eq!(
            messages(quote!(autoscaling(
                min_replicas = 1,
                max_replicas = 4,
                initial_replicas = #initial
            ))),
            ["initial_replicas must be between min_replicas (1) and max_replicas (4)"]
        );
    }
}

#[test]
fn autoscaling_numbers_say_their_range() {
    assert_eq!(
        messages(quote!(autoscaling(
            min_replicas = 0,
            max_replicas = 4,
            target_ongoing_requests = 0,
            upscale_delay_s = -1,
            downscale_delay_s = 1e300,
            initial_replicas = -1,
        ))),
        [
            "target_ongoing_requests must be greater than 0",
            "upscale_delay_s must be 0 or greater",
            "`downscale_delay_s` is too large",
            "initial_replicas must be at least 0",
        ]
    );
    assert_eq!(
        messages(quote!(autoscaling(
            min_replicas = 1.5,
            max_replicas = "4",
            upscale_delay_s = "1s",
        ))),
        [
            "`min_replicas` expects an integer, such as `min_replicas = 4`",
            "`max_replicas` expects an integer, such as `max_replicas = 4`",
            "`upscale_delay_s` expects a number, such as `upscale_delay_s = 1` or \
             `upscale_delay_s = 0.5`",
        ]
    );
    let a = autoscaling_of(quote!(autoscaling(
        min_replicas = 0,
        max_replicas = 1,
        upscale_delay_s = 0,
        downscale_delay_s = -0.0
    )));
    assert_eq!(a.upscale_delay_s.map(|d| d.value), Some(0.0));
    assert!(
        a.downscale_delay_s
            .is_some_and(|d| d.value.is_sign_positive())
    );
}

#[test]
fn unknown_autoscaling_key_lists_the_valid_ones() {
    let messages = messages(quote!(autoscaling(
        min_replicas = 0,
        max_replicas = 4,
        target = 2
    )));
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0].starts_with("unknown argument `target` in `autoscaling(...)`"),
        "{messages:?}"
    );
    for key in AUTOSCALING_KEYS {
        assert!(messages[0].contains(&format!("`{key}`")), "{messages:?}");
    }
    // Top-level keys are not autoscaling settings, nor the other way round.
    assert!(!messages[0].contains("`num_cpus`"), "{messages:?}");
}

#[test]
fn autoscaling_keys_are_not_top_level_keys() {
    let messages = messages(quote!(max_replicas = 4));
    assert!(
        messages[0].starts_with("unknown argument `max_replicas`; expected one of"),
        "{messages:?}"
    );
}

#[test]
fn duplicate_is_checked_for_every_autoscaling_key() {
    for key in AUTOSCALING_KEYS {
        let tokens =
            format!("autoscaling(min_replicas = 1, max_replicas = 1, {key} = 1, {key} = 1)");
        let expected = match *key {
            "min_replicas" | "max_replicas" => vec![
                format!("duplicate argument `{key}`"),
                format!("duplicate argument `{key}`"),
            ],
            _ => vec![format!("duplicate argument `{key}`")],
        };
        assert_eq!(messages(tokens.parse().unwrap()), expected, "{key}");
    }
}

#[test]
fn syntax_errors_inside_autoscaling_are_collected_with_the_rest() {
    assert_eq!(
        messages(quote!(
            autoscaling(min_replicas = 1 max_replicas = 2),
            num_cpus = 0,
        )),
        ["expected `,`", "num_cpus must be greater than 0"]
    );
    assert_eq!(
        messages(quote!(autoscaling("x"))),
        ["expected an argument such as `num_replicas = 2`"]
    );
}

#[test]
fn every_autoscaling_error_is_collected() {
    let messages = messages(quote!(
        num_cpus = 0,
        autoscaling(
            min_replicas = 5,
            max_replicas = 4,
            target = 1,
            upscale_delay_s = -1,
        ),
        memory = "2 potatoes",
    ));
    assert_eq!(messages.len(), 5, "{messages:?}");
}

#[test]
fn num_replicas_and_autoscaling_clash_once() {
    let clash = "`num_replicas` and `autoscaling(...)` cannot both be given; \
                 autoscaling sets the number of replicas";
    for tokens in [
        quote!(
            num_replicas = 2,
            autoscaling(min_replicas = 1, max_replicas = 4)
        ),
        quote!(
            autoscaling(min_replicas = 1, max_replicas = 4),
            num_replicas = "auto"
        ),
        quote!(
            num_replicas = 2,
            num_replicas = 3,
            autoscaling(min_replicas = 1, max_replicas = 4)
        ),
    ] {
        let messages = messages(tokens.clone());
        assert_eq!(
            messages.iter().filter(|m| *m == clash).count(),
            1,
            "{tokens}: {messages:?}"
        );
    }
    // Each is fine alone.
    ok(quote!(num_replicas = "auto"));
    ok(quote!(autoscaling(min_replicas = 1, max_replicas = 4)));
}

#[test]
fn health_and_shutdown_times_say_their_range() {
    assert_eq!(
        messages(quote!(
            health_check_period_s = 0,
            health_check_timeout_s = -1.5,
            graceful_shutdown_timeout_s = -1,
        )),
        [
            "health_check_period_s must be greater than 0",
            "health_check_timeout_s must be greater than 0",
            "graceful_shutdown_timeout_s must be 0 or greater",
        ]
    );
    assert_eq!(
        messages(quote!(
            health_check_period_s = 1e20,
            health_check_timeout_s = "5s"
        )),
        [
            "`health_check_period_s` is too large",
            "`health_check_timeout_s` expects a number, such as \
             `health_check_timeout_s = 1` or `health_check_timeout_s = 0.5`",
        ]
    );
    let args = ok(quote!(
        health_check_period_s = 0.001,
        graceful_shutdown_timeout_s = -0.0
    ));
    assert_eq!(value(&args.health_check_period_s), 0.001);
    assert!(value(&args.graceful_shutdown_timeout_s).is_sign_positive());
}

#[test]
#[should_panic(expected = "never reported")]
fn forgetting_to_check_errors_panics() {
    let errors = Errors::new();
    errors.error_at(Span::call_site(), "lost");
    drop(errors);
}
