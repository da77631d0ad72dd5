//! Parsing and checking the arguments of `#[agent(...)]`.
//!
//! Parsing is in two steps: the syntax (`key = value`, comma separated) is read first, and a syntax
//! error stops there; then every argument is checked on its own, and every mistake goes into
//! [`Errors`] so that the user sees all of them at once, each at the token it is about.

use std::cell::RefCell;
use std::fmt::Display;
use std::thread;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Lit, LitStr, Token, UnOp};

use crate::memory::parse_memory;
use crate::naming::check_name;

/// The keys `#[agent]` knows, in the order error messages list them.
const KEYS: &[&str] = &[
    "name",
    "num_cpus",
    "num_gpus",
    "memory",
    "num_replicas",
    "max_ongoing_requests",
    "max_queued_requests",
    "crate",
];

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
    /// Set by the first occurrence of the key, even when its value is wrong, so that a repeat is
    /// reported as a duplicate in the same pass as the wrong value.
    given: bool,
    /// The checked value and where the user wrote it; `None` when not given or wrong.
    pub(crate) value: Option<Spanned<T>>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            given: false,
            value: None,
        }
    }
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
    /// `num_replicas = 4`: 1 or more.
    pub(crate) num_replicas: Slot<u32>,
    /// `max_ongoing_requests = 5`: 1 or more.
    pub(crate) max_ongoing_requests: Slot<u32>,
    /// `max_queued_requests = 10`; a value of `None` for `-1`, no limit.
    pub(crate) max_queued_requests: Slot<Option<u32>>,
    /// `crate = "rayai_core"`: the path the generated code reaches the runtime by.
    pub(crate) krate: Slot<syn::Path>,
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
            "name" => set_once(&mut args.name, arg, |value| {
                let lit = string(key, value, "echo")?;
                let name = lit.value();
                check_name(&name).map_err(|reason| {
                    syn::Error::new(lit.span(), format!("invalid agent name {name:?}: {reason}"))
                })?;
                Ok(name)
            }),
            "num_cpus" => set_once(&mut args.num_cpus, arg, |value| {
                let cpus = float(key, value)?;
                ensure(cpus > 0.0, value, "num_cpus must be greater than 0")?;
                Ok(cpus)
            }),
            "num_gpus" => set_once(&mut args.num_gpus, arg, |value| {
                let gpus = float(key, value)?;
                ensure(gpus >= 0.0, value, "num_gpus must be 0 or greater")?;
                // `-0.0` is zero GPUs; emit it as `0.0`.
                Ok(gpus.abs())
            }),
            "memory" => set_once(&mut args.memory_bytes, arg, |value| {
                let lit = string(key, value, "2GB")?;
                parse_memory(&lit.value())
                    .map_err(|error| syn::Error::new(lit.span(), error.message()))
            }),
            "num_replicas" => {
                set_once(&mut args.num_replicas, arg, |value| at_least(1, key, value))
            }
            "max_ongoing_requests" => set_once(&mut args.max_ongoing_requests, arg, |value| {
                at_least(1, key, value)
            }),
            "max_queued_requests" => set_once(&mut args.max_queued_requests, arg, |value| {
                let n = integer(key, value)?;
                if n == -1 {
                    return Ok(None);
                }
                ensure(
                    n >= 0,
                    value,
                    "max_queued_requests must be 0 or more, or -1 for no limit",
                )?;
                fits_u32(n, key, value).map(Some)
            }),
            "crate" => set_once(&mut args.krate, arg, |value| {
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
                    KEYS.iter()
                        .map(|key| format!("`{key}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }
    args
}

/// Checks the value of one argument with `check` and stores it in `slot`, recording an error
/// instead when the value is wrong or when the key was already given.
///
/// Every argument goes through here, so that no key can miss its duplicate check.
fn set_once<T>(
    slot: &mut Slot<T>,
    (key, value, errors): (&Ident, &Expr, &Errors),
    check: impl FnOnce(&Expr) -> syn::Result<T>,
) {
    let checked = check(value);
    if slot.given {
        errors.error_at(key.span(), format!("duplicate argument `{}`", key.unraw()));
    }
    match checked {
        Ok(checked) if !slot.given => {
            slot.value = Some(Spanned {
                value: checked,
                span: first_span(value),
            });
        }
        Ok(_) => {}
        Err(error) => errors.push(error),
    }
    slot.given = true;
}

/// `Ok` when `condition` holds, else an error at `value`.
fn ensure(condition: bool, value: &Expr, message: &str) -> syn::Result<()> {
    if condition {
        Ok(())
    } else {
        Err(syn::Error::new_spanned(value, message))
    }
}

/// One `key = value` as written, before any check.
struct RawArg {
    key: Ident,
    value: Expr,
}

impl Parse for RawArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if !input.peek(Ident::peek_any) {
            return Err(input.error("expected an argument such as `num_replicas = 2`"));
        }
        // `crate` is a keyword, hence `parse_any`.
        let key = input.call(Ident::parse_any)?;
        if !input.peek(Token![=]) {
            return Err(syn::Error::new(
                key.span(),
                format!("expected `{} = ...`", key.unraw()),
            ));
        }
        input.parse::<Token![=]>()?;
        let value = input.parse()?;
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
fn float(key: &Ident, value: &Expr) -> syn::Result<f64> {
    let parsed = match numeric_literal(value) {
        Some((negative, Lit::Int(lit))) => lit.base10_parse::<f64>().map(|n| (negative, n)),
        Some((negative, Lit::Float(lit))) => lit.base10_parse::<f64>().map(|n| (negative, n)),
        _ => {
            let key = key.unraw();
            return Err(syn::Error::new_spanned(
                value,
                format!("`{key}` expects a number, such as `{key} = 1` or `{key} = 0.5`"),
            ));
        }
    };
    match parsed {
        Ok((negative, number)) if number.is_finite() => Ok(if negative { -number } else { number }),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{}` is too large", key.unraw()),
        )),
    }
}

/// An integer literal, maybe negated.
fn integer(key: &Ident, value: &Expr) -> syn::Result<i128> {
    let Some((negative, Lit::Int(lit))) = numeric_literal(value) else {
        let key = key.unraw();
        return Err(syn::Error::new_spanned(
            value,
            format!("`{key}` expects an integer, such as `{key} = 4`"),
        ));
    };
    let n = lit
        .base10_parse::<u64>()
        .map_err(|_| syn::Error::new_spanned(value, format!("`{}` is too large", key.unraw())))?;
    Ok(if negative {
        -i128::from(n)
    } else {
        i128::from(n)
    })
}

/// An integer from `min` up to `u32::MAX`.
fn at_least(min: i128, key: &Ident, value: &Expr) -> syn::Result<u32> {
    let n = integer(key, value)?;
    ensure(
        n >= min,
        value,
        &format!("{} must be at least {min}", key.unraw()),
    )?;
    fits_u32(n, key, value)
}

/// `n` as a `u32`, or an error that says the largest allowed.
fn fits_u32(n: i128, key: &Ident, value: &Expr) -> syn::Result<u32> {
    u32::try_from(n).map_err(|_| {
        syn::Error::new_spanned(
            value,
            format!("{} must be at most {}", key.unraw(), u32::MAX),
        )
    })
}

/// A string literal; `example` is a valid value for the error message.
fn string<'a>(key: &Ident, value: &'a Expr, example: &str) -> syn::Result<&'a LitStr> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit),
        Expr::Group(group) => string(key, &group.expr, example),
        _ => {
            let key = key.unraw();
            Err(syn::Error::new_spanned(
                value,
                format!("`{key}` expects a string, such as `{key} = {example:?}`"),
            ))
        }
    }
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
mod tests {
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
        assert!(!args.name.given && !args.num_cpus.given && !args.krate.given);
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
            crate = "rayai_core",
        ));
        assert_eq!(value(&args.name), "echo-2");
        assert_eq!(value(&args.num_cpus), 1.0);
        assert_eq!(value(&args.num_gpus), 0.5);
        assert_eq!(value(&args.memory_bytes), 2 << 30);
        assert_eq!(value(&args.num_replicas), 4);
        assert_eq!(value(&args.max_ongoing_requests), 5);
        assert_eq!(value(&args.max_queued_requests), Some(10));
        let krate = value(&args.krate);
        assert_eq!(quote!(#krate).to_string(), "rayai_core");
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
        assert_eq!(value(&args.num_replicas), 1000);
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
            let value = match *key {
                "name" => "\"a\"",
                "memory" => "\"1GB\"",
                "crate" => "\"rayai\"",
                _ => "1",
            };
            let tokens = format!("{key} = {value}, {key} = {value}").parse().unwrap();
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
                "`num_replicas` expects an integer, such as `num_replicas = 4`",
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
        assert_eq!(value(&args.num_replicas), 3);
    }

    #[test]
    #[should_panic(expected = "never reported")]
    fn forgetting_to_check_errors_panics() {
        let errors = Errors::new();
        errors.error_at(Span::call_site(), "lost");
        drop(errors);
    }
}
