//! Parsing and checking the arguments of `#[agent(...)]`.
//!
//! Parsing is in two steps: the syntax (`key = value` or `key(...)`, comma separated) is read first,
//! and a syntax error stops there; then every argument is checked on its own, and every mistake goes
//! into [`Errors`] so that the user sees all of them at once, each at the token it is about. The
//! settings inside `key(...)` are read with the same syntax, but a syntax error there is kept with
//! the argument and reported with the other mistakes when the argument is checked.

use std::cell::RefCell;
use std::fmt::Display;
use std::thread;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Lit, LitStr, Token, UnOp, parenthesized, token};

use rayai_rules::{Field, Problem, autoscaling as scaling, check_name, deployment, parse_memory};

/// The keys `#[agent]` knows, in the order error messages list them.
const KEYS: &[&str] = &[
    "name",
    "num_cpus",
    "num_gpus",
    "memory",
    "num_replicas",
    "autoscaling",
    "max_ongoing_requests",
    "max_queued_requests",
    "backpressure_retry_after_s",
    "health_check_period_s",
    "health_check_timeout_s",
    "graceful_shutdown_timeout_s",
    "isolation",
    "crate",
];

/// The keys inside `autoscaling(...)`, in the order error messages list them.
const AUTOSCALING_KEYS: &[&str] = &[
    "min_replicas",
    "max_replicas",
    "target_ongoing_requests",
    "upscale_delay_s",
    "downscale_delay_s",
    "initial_replicas",
];

/// How `autoscaling` is written, for error messages.
const AUTOSCALING_EXAMPLE: &str = "autoscaling(min_replicas = 1, max_replicas = 4)";

/// Every error found while expanding one `#[agent]`, reported together at the end.
///
/// After the first error is recorded, [`Errors::check`] must be called before the value is dropped,
/// or it panics: an error that is found and then forgotten would become a silent success.
pub(crate) struct Errors {
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Errors {
    /// No errors yet.
    pub(crate) fn new() -> Self {
        Errors {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// Records an error that points at `tokens` (all of them, where the compiler can show that).
    pub(crate) fn error_spanned_by(&self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Records an error that points at `span`.
    pub(crate) fn error_at(&self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Records an error that already has its span, such as a syntax error.
    pub(crate) fn push(&self, error: syn::Error) {
        self.errors
            .borrow_mut()
            .as_mut()
            .expect("Errors::check was already called")
            .push(error);
    }

    /// Whether no error has been recorded so far.
    pub(crate) fn is_empty(&self) -> bool {
        self.errors.borrow().as_ref().is_none_or(Vec::is_empty)
    }

    /// All the recorded errors as one, or `Ok` when there are none.
    pub(crate) fn check(self) -> Result<(), syn::Error> {
        let errors = self.errors.borrow_mut().take().unwrap_or_default();
        errors
            .into_iter()
            .reduce(|mut all, next| {
                all.combine(next);
                all
            })
            .map_or(Ok(()), Err)
    }
}

impl Drop for Errors {
    fn drop(&mut self) {
        if !thread::panicking() && !self.is_empty() {
            panic!("an #[agent] error was recorded but never reported");
        }
    }
}

/// A value from the attribute and the span of the tokens it was written as.
#[derive(Clone)]
pub(crate) struct Spanned<T> {
    /// The checked value.
    pub(crate) value: T,
    /// Where the user wrote it.
    pub(crate) span: Span,
}

impl<T> Spanned<Option<T>> {
    /// The value inside, at the same span, when there is one.
    pub(crate) fn transpose(self) -> Option<Spanned<T>> {
        let span = self.span;
        self.value.map(|value| Spanned { value, span })
    }
}

/// Where one argument goes: whether its key was given, and its value if that was right.
pub(crate) struct Slot<T> {
    /// Where the key was first given; set even when its value is wrong, so that a repeat is
    /// reported as a duplicate in the same pass as the wrong value, and a clash with another key
    /// can point at it.
    key: Option<Span>,
    /// The checked value and where the user wrote it; `None` when not given or wrong.
    pub(crate) value: Option<Spanned<T>>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            key: None,
            value: None,
        }
    }
}

impl<T> Slot<T> {
    /// Whether the key was given, rightly or not.
    fn given(&self) -> bool {
        self.key.is_some()
    }
}

/// `num_replicas`: a fixed count, or `"auto"`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Replicas {
    /// `num_replicas = 4`: 1 or more.
    Fixed(u32),
    /// `num_replicas = "auto"`: Ray Serve's default autoscaling.
    Auto,
}

/// The checked settings of `autoscaling(...)`; the runtime's default for each optional one not
/// given.
#[derive(Clone)]
pub(crate) struct Autoscaling {
    /// `min_replicas = 0`: 0 or more.
    pub(crate) min_replicas: Spanned<u32>,
    /// `max_replicas = 4`: 1 or more, and at least `min_replicas`.
    pub(crate) max_replicas: Spanned<u32>,
    /// `target_ongoing_requests = 2`: finite and greater than 0.
    pub(crate) target_ongoing_requests: Option<Spanned<f64>>,
    /// `upscale_delay_s = 30`: seconds, 0 or more.
    pub(crate) upscale_delay_s: Option<Spanned<f64>>,
    /// `downscale_delay_s = 600`: seconds, 0 or more.
    pub(crate) downscale_delay_s: Option<Spanned<f64>>,
    /// `initial_replicas = 1`: from `min_replicas` to `max_replicas`.
    pub(crate) initial_replicas: Option<Spanned<u32>>,
}

/// Where the settings of `autoscaling(...)` go while they are checked.
#[derive(Default)]
struct AutoscalingSlots {
    min_replicas: Slot<u32>,
    max_replicas: Slot<u32>,
    target_ongoing_requests: Slot<f64>,
    upscale_delay_s: Slot<f64>,
    downscale_delay_s: Slot<f64>,
    initial_replicas: Slot<u32>,
}

/// The checked arguments of one `#[agent(...)]`; an empty slot for each one not given.
#[derive(Default)]
pub(crate) struct Args {
    /// `name = "echo"`: already checked to be URL-safe.
    pub(crate) name: Slot<String>,
    /// `num_cpus = 0.5`: finite and greater than 0.
    pub(crate) num_cpus: Slot<f64>,
    /// `num_gpus = 1`: finite and 0 or more.
    pub(crate) num_gpus: Slot<f64>,
    /// `memory = "2GB"`, in bytes.
    pub(crate) memory_bytes: Slot<u64>,
    /// `num_replicas = 4` (1 or more) or `num_replicas = "auto"`.
    pub(crate) num_replicas: Slot<Replicas>,
    /// `autoscaling(min_replicas = 0, max_replicas = 4, ...)`; never given with `num_replicas`.
    pub(crate) autoscaling: Slot<Autoscaling>,
    /// `max_ongoing_requests = 5`: 1 or more.
    pub(crate) max_ongoing_requests: Slot<u32>,
    /// `max_queued_requests = 10`; a value of `None` for `-1`, no limit.
    pub(crate) max_queued_requests: Slot<Option<u32>>,
    /// `backpressure_retry_after_s = 5`: this deployment's overload is a `429` with this
    /// `Retry-After` instead of the `503`.
    pub(crate) backpressure_retry_after_s: Slot<u32>,
    /// `health_check_period_s = 10`: seconds, greater than 0.
    pub(crate) health_check_period_s: Slot<f64>,
    /// `health_check_timeout_s = 30`: seconds, greater than 0.
    pub(crate) health_check_timeout_s: Slot<f64>,
    /// `graceful_shutdown_timeout_s = 20`: seconds, 0 or more.
    pub(crate) graceful_shutdown_timeout_s: Slot<f64>,
    /// `isolation = "auto"`, `"thread"` or `"shared"`: where the replicas run their code.
    pub(crate) isolation: Slot<Isolation>,
    /// `crate = "rayai_core"`: the path the generated code reaches the runtime by.
    pub(crate) krate: Slot<syn::Path>,
}

/// `isolation = "..."`: where a deployment's replicas run their code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isolation {
    Auto,
    Thread,
    Shared,
}

/// Parses the tokens inside `#[agent(...)]`, recording every mistake in `errors`.
///
/// When there are errors, the returned arguments hold only the ones that were right.
pub(crate) fn parse(tokens: TokenStream, errors: &Errors) -> Args {
    let mut args = Args::default();
    let raw = match Punctuated::<RawArg, Token![,]>::parse_terminated.parse2(tokens) {
        Ok(raw) => raw,
        Err(error) => {
            errors.push(error);
            return args;
        }
    };
    for RawArg { key, value } in &raw {
        let arg = (key, value, errors);
        match key.unraw().to_string().as_str() {
            "name" => set_expr_once(&mut args.name, arg, |value| {
                let lit = string(key, value, "echo")?;
                let name = lit.value();
                check_name(&name).map_err(|reason| {
                    syn::Error::new(lit.span(), format!("invalid agent name {name:?}: {reason}"))
                })?;
                Ok(name)
            }),
            "num_cpus" => set_expr_once(&mut args.num_cpus, arg, |value| {
                number(deployment::NUM_CPUS, value)
            }),
            "num_gpus" => set_expr_once(&mut args.num_gpus, arg, |value| {
                number(deployment::NUM_GPUS, value)
            }),
            "memory" => set_expr_once(&mut args.memory_bytes, arg, |value| {
                let lit = string(key, value, "2GB")?;
                parse_memory(&lit.value())
                    .map_err(|error| syn::Error::new(lit.span(), error.message()))
            }),
            "num_replicas" => {
                set_expr_once(&mut args.num_replicas, arg, |value| replicas(key, value))
            }
            "autoscaling" => set_once(&mut args.autoscaling, arg, |value| autoscaling(key, value)),
            "max_ongoing_requests" => set_expr_once(&mut args.max_ongoing_requests, arg, |value| {
                count(deployment::MAX_ONGOING_REQUESTS, value)
            }),
            "max_queued_requests" => set_expr_once(&mut args.max_queued_requests, arg, |value| {
                let field = deployment::MAX_QUEUED_REQUESTS;
                field.check_limit(integer(field, value)?).map_err(at(value))
            }),
            "backpressure_retry_after_s" => {
                set_expr_once(&mut args.backpressure_retry_after_s, arg, |value| {
                    count(deployment::BACKPRESSURE_RETRY_AFTER_S, value)
                });
            }
            "health_check_period_s" => {
                set_expr_once(&mut args.health_check_period_s, arg, |value| {
                    seconds(deployment::HEALTH_CHECK_PERIOD_S, value)
                });
            }
            "health_check_timeout_s" => {
                set_expr_once(&mut args.health_check_timeout_s, arg, |value| {
                    seconds(deployment::HEALTH_CHECK_TIMEOUT_S, value)
                });
            }
            "graceful_shutdown_timeout_s" => {
                set_expr_once(&mut args.graceful_shutdown_timeout_s, arg, |value| {
                    seconds(deployment::GRACEFUL_SHUTDOWN_TIMEOUT_S, value)
                });
            }
            "isolation" => set_expr_once(&mut args.isolation, arg, |value| {
                let lit = string(key, value, "thread")?;
                match lit.value().as_str() {
                    "auto" => Ok(Isolation::Auto),
                    "thread" => Ok(Isolation::Thread),
                    "shared" => Ok(Isolation::Shared),
                    _ => Err(syn::Error::new(
                        lit.span(),
                        "`isolation` is \"auto\" (the default: threads of their own, calls in \
                         place while they are quick), \"thread\" (every call on the replica's own \
                         threads) or \"shared\" (on the server's runtime, for code that never \
                         blocks)",
                    )),
                }
            }),
            "crate" => set_expr_once(&mut args.krate, arg, |value| {
                let lit = string(key, value, "rayai")?;
                lit.parse::<syn::Path>().map_err(|_| {
                    syn::Error::new(
                        lit.span(),
                        "`crate` must be a path, such as \"rayai\" or \"::rayai\"",
                    )
                })
            }),
            unknown => errors.error_at(
                key.span(),
                format!(
                    "unknown argument `{unknown}`; expected one of {}",
                    list(KEYS)
                ),
            ),
        }
    }
    if let (Some(_), Some(autoscaling)) = (args.num_replicas.key, args.autoscaling.key) {
        errors.error_at(
            autoscaling,
            "`num_replicas` and `autoscaling(...)` cannot both be given; \
             autoscaling sets the number of replicas",
        );
    }
    args
}

/// `` `a`, `b`, `c` ``: the keys for an "expected one of" message.
fn list(keys: &[&str]) -> String {
    keys.iter()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks the value of one argument with `check` and stores it in `slot`, recording an error
/// instead when the value is wrong or when the key was already given.
///
/// Every argument, and every setting inside `autoscaling(...)`, goes through here, so that no key
/// can miss its duplicate check.
fn set_once<T>(
    slot: &mut Slot<T>,
    (key, value, errors): (&Ident, &RawValue, &Errors),
    check: impl FnOnce(&RawValue) -> syn::Result<T>,
) {
    let checked = check(value);
    if slot.given() {
        errors.error_at(key.span(), format!("duplicate argument `{}`", key.unraw()));
    }
    match checked {
        Ok(checked) if !slot.given() => {
            slot.value = Some(Spanned {
                value: checked,
                span: value.span(),
            });
        }
        Ok(_) => {}
        Err(error) => errors.push(error),
    }
    slot.key.get_or_insert(key.span());
}

/// [`set_once`] for an argument written `key = value`; `key(...)` is an error.
fn set_expr_once<T>(
    slot: &mut Slot<T>,
    (key, value, errors): (&Ident, &RawValue, &Errors),
    check: impl FnOnce(&Expr) -> syn::Result<T>,
) {
    set_once(slot, (key, value, errors), |value| match value {
        RawValue::Expr(expr) => check(expr),
        RawValue::List { .. } => Err(syn::Error::new(key.span(), expected_form(key))),
    });
}

/// `num_replicas`: an integer, 1 or more, or the string `"auto"`.
fn replicas(key: &Ident, value: &Expr) -> syn::Result<Replicas> {
    let expected = || {
        format!(
            "`{key}` takes an integer >= 1 or \"auto\", such as `{key} = 4` or `{key} = \"auto\"`",
            key = key.unraw()
        )
    };
    if let Some(lit) = string_literal(value) {
        return if lit.value() == "auto" {
            Ok(Replicas::Auto)
        } else {
            Err(syn::Error::new(lit.span(), expected()))
        };
    }
    match numeric_literal(value) {
        Some((_, Lit::Int(_))) => count(deployment::NUM_REPLICAS, value).map(Replicas::Fixed),
        _ => Err(syn::Error::new_spanned(value, expected())),
    }
}

/// `autoscaling(...)`: checks every setting inside, and that they agree with one another.
///
/// Every mistake inside is returned, combined into one error.
fn autoscaling(key: &Ident, value: &RawValue) -> syn::Result<Autoscaling> {
    let RawValue::List { args, .. } = value else {
        return Err(syn::Error::new(key.span(), expected_form(key)));
    };
    let args = args.as_ref().map_err(Clone::clone)?;
    let errors = Errors::new();
    let mut slots = AutoscalingSlots::default();
    for RawArg { key: inner, value } in args {
        let arg = (inner, value, &errors);
        match inner.unraw().to_string().as_str() {
            "min_replicas" => set_expr_once(&mut slots.min_replicas, arg, |value| {
                count(scaling::MIN_REPLICAS, value)
            }),
            "max_replicas" => set_expr_once(&mut slots.max_replicas, arg, |value| {
                count(scaling::MAX_REPLICAS, value)
            }),
            "target_ongoing_requests" => {
                set_expr_once(&mut slots.target_ongoing_requests, arg, |value| {
                    number(scaling::TARGET_ONGOING_REQUESTS, value)
                });
            }
            "upscale_delay_s" => set_expr_once(&mut slots.upscale_delay_s, arg, |value| {
                seconds(scaling::UPSCALE_DELAY_S, value)
            }),
            "downscale_delay_s" => set_expr_once(&mut slots.downscale_delay_s, arg, |value| {
                seconds(scaling::DOWNSCALE_DELAY_S, value)
            }),
            "initial_replicas" => set_expr_once(&mut slots.initial_replicas, arg, |value| {
                count(scaling::INITIAL_REPLICAS, value)
            }),
            unknown => errors.error_at(
                inner.span(),
                format!(
                    "unknown argument `{unknown}` in `autoscaling(...)`; expected one of {}",
                    list(AUTOSCALING_KEYS)
                ),
            ),
        }
    }
    let AutoscalingSlots {
        min_replicas,
        max_replicas,
        target_ongoing_requests,
        upscale_delay_s,
        downscale_delay_s,
        initial_replicas,
    } = slots;
    for (name, given) in [
        ("min_replicas", min_replicas.given()),
        ("max_replicas", max_replicas.given()),
    ] {
        if !given {
            errors.error_at(
                key.span(),
                format!("`autoscaling(...)` needs `{name}`, such as `{AUTOSCALING_EXAMPLE}`"),
            );
        }
    }
    if let (Some(min), Some(max)) = (&min_replicas.value, &max_replicas.value) {
        let initial = initial_replicas.value.as_ref();
        if let Err(problem) =
            scaling::check_replica_range(min.value, max.value, initial.map(|i| i.value))
        {
            let span = match (problem, initial) {
                (Problem::InitialOutOfRange { .. }, Some(initial)) => initial.span,
                _ => max.span,
            };
            errors.error_at(span, problem);
        }
    }
    match (min_replicas.value, max_replicas.value, errors.check()) {
        (Some(min_replicas), Some(max_replicas), Ok(())) => Ok(Autoscaling {
            min_replicas,
            max_replicas,
            target_ongoing_requests: target_ongoing_requests.value,
            upscale_delay_s: upscale_delay_s.value,
            downscale_delay_s: downscale_delay_s.value,
            initial_replicas: initial_replicas.value,
        }),
        (_, _, Err(error)) => Err(error),
        // Not reached: a bound that is missing or wrong is among the errors.
        _ => Err(syn::Error::new(
            key.span(),
            format!(
                "`autoscaling(...)` needs `min_replicas` and `max_replicas`, such as `{AUTOSCALING_EXAMPLE}`"
            ),
        )),
    }
}

/// A number within `field`'s bound; `-0.0` comes back as `0.0`.
fn number(field: Field, value: &Expr) -> syn::Result<f64> {
    field.check(float(field, value)?).map_err(at(value))
}

/// A number of seconds within `field`'s bound that a `Duration` holds.
fn seconds(field: Field, value: &Expr) -> syn::Result<f64> {
    let secs = number(field, value)?;
    field.check_seconds(secs).map_err(at(value))?;
    Ok(secs)
}

/// An integer within `field`'s bound that a `u32` holds.
fn count(field: Field, value: &Expr) -> syn::Result<u32> {
    field.check_count(integer(field, value)?).map_err(at(value))
}

/// Turns a broken rule into an error at `value`, with the rule's message.
fn at(value: &Expr) -> impl Fn(Problem) -> syn::Error + '_ {
    move |problem| syn::Error::new_spanned(value, problem)
}

/// One `key = value` or `key(...)` as written, before any check.
struct RawArg {
    key: Ident,
    value: RawValue,
}

/// What follows the key of a [`RawArg`].
enum RawValue {
    /// `= value`.
    Expr(Expr),
    /// `(key = value, ...)`, or the syntax error found inside the parentheses.
    List {
        paren: token::Paren,
        args: syn::Result<Punctuated<RawArg, Token![,]>>,
    },
}

impl RawValue {
    /// Where the value starts: its first token, or the opening parenthesis.
    fn span(&self) -> Span {
        match self {
            RawValue::Expr(expr) => first_span(expr),
            RawValue::List { paren, .. } => paren.span.open(),
        }
    }
}

/// How the argument `key` is written, for an error about its form.
fn expected_form(key: &Ident) -> String {
    match key.unraw().to_string().as_str() {
        "autoscaling" => format!("expected `autoscaling(...)`, such as `{AUTOSCALING_EXAMPLE}`"),
        key => format!("expected `{key} = ...`"),
    }
}

impl Parse for RawArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if !input.peek(Ident::peek_any) {
            return Err(input.error("expected an argument such as `num_replicas = 2`"));
        }
        // `crate` is a keyword, hence `parse_any`.
        let key = input.call(Ident::parse_any)?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            RawValue::Expr(input.parse()?)
        } else if input.peek(token::Paren) {
            let content;
            let paren = parenthesized!(content in input);
            let args = content.call(Punctuated::parse_terminated);
            if args.is_err() {
                // Skip the rest, so that the error is reported when the argument is checked,
                // with the others, and not as tokens left over.
                content.parse::<TokenStream>()?;
            }
            RawValue::List { paren, args }
        } else {
            return Err(syn::Error::new(key.span(), expected_form(&key)));
        };
        Ok(RawArg { key, value })
    }
}

/// A numeric literal, maybe negated, as written: whether a `-` came before it, and the literal.
fn numeric_literal(value: &Expr) -> Option<(bool, &Lit)> {
    match value {
        Expr::Lit(expr) if matches!(expr.lit, Lit::Int(_) | Lit::Float(_)) => {
            Some((false, &expr.lit))
        }
        Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) => {
            match numeric_literal(&unary.expr) {
                Some((false, lit)) => Some((true, lit)),
                _ => None,
            }
        }
        // A value passed in through a `macro_rules!` fragment arrives wrapped in a group.
        Expr::Group(group) => numeric_literal(&group.expr),
        _ => None,
    }
}

/// A number written as an integer or a float literal, maybe negated.
fn float(field: Field, value: &Expr) -> syn::Result<f64> {
    let parsed = match numeric_literal(value) {
        Some((negative, Lit::Int(lit))) => lit.base10_parse::<f64>().map(|n| (negative, n)),
        Some((negative, Lit::Float(lit))) => lit.base10_parse::<f64>().map(|n| (negative, n)),
        _ => {
            let key = field.name();
            return Err(syn::Error::new_spanned(
                value,
                format!("`{key}` expects a number, such as `{key} = 1` or `{key} = 0.5`"),
            ));
        }
    };
    match parsed {
        Ok((negative, number)) if number.is_finite() => Ok(if negative { -number } else { number }),
        _ => Err(at(value)(Problem::TooLarge(field))),
    }
}

/// An integer literal, maybe negated.
fn integer(field: Field, value: &Expr) -> syn::Result<i128> {
    let Some((negative, Lit::Int(lit))) = numeric_literal(value) else {
        let key = field.name();
        return Err(syn::Error::new_spanned(
            value,
            format!("`{key}` expects an integer, such as `{key} = 4`"),
        ));
    };
    let n = lit
        .base10_parse::<u64>()
        .map_err(|_| at(value)(Problem::TooLarge(field)))?;
    Ok(if negative {
        -i128::from(n)
    } else {
        i128::from(n)
    })
}

/// A string literal as written, if `value` is one.
fn string_literal(value: &Expr) -> Option<&LitStr> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(lit), ..
        }) => Some(lit),
        Expr::Group(group) => string_literal(&group.expr),
        _ => None,
    }
}

/// A string literal; `example` is a valid value for the error message.
fn string<'a>(key: &Ident, value: &'a Expr, example: &str) -> syn::Result<&'a LitStr> {
    string_literal(value).ok_or_else(|| {
        let key = key.unraw();
        syn::Error::new_spanned(
            value,
            format!("`{key}` expects a string, such as `{key} = {example:?}`"),
        )
    })
}

/// The span of the first token of `value`, where the generated code places its literal.
fn first_span(value: &Expr) -> Span {
    value
        .to_token_stream()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |token| token.span())
}

#[cfg(test)]
#[path = "attr_tests.rs"]
mod tests;
