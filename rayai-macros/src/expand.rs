//! The code `#[agent]` generates: an `impl Deploy` and the agent's registration.

use std::path::Path;

use proc_macro2::{Literal, Span, TokenStream};
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::{Item, ItemStruct, LitStr};

use crate::attr::{self, Args, Autoscaling, Errors, Isolation, Replicas, Spanned};
use crate::naming;

/// Expands `#[agent(args)]` on `input`; `source_file` is the file the attribute is in, if known.
///
/// The item is always emitted as it was written. The `impl` and the registration follow only when
/// there is no error; otherwise every error follows as a `compile_error!`, with a placeholder
/// `impl` for a plain struct, so that the user reads our errors and not what a half-generated
/// `impl`, or a missing one, would cause.
pub(crate) fn agent(
    args: TokenStream,
    input: TokenStream,
    source_file: Option<&Path>,
) -> TokenStream {
    expand(Kind::Agent, args, input, source_file)
}

/// Which attribute is expanding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `#[agent]`: registered for `App::discover`.
    Agent,
    /// `#[deployment]`: a handler's configuration, not registered.
    Deployment,
}

impl Kind {
    fn attribute(self) -> &'static str {
        match self {
            Kind::Agent => "#[agent]",
            Kind::Deployment => "#[deployment]",
        }
    }
}

/// Expands `#[agent(args)]` or `#[deployment(args)]` on `input`.
pub(crate) fn expand(
    kind: Kind,
    args: TokenStream,
    input: TokenStream,
    source_file: Option<&Path>,
) -> TokenStream {
    let errors = Errors::new();
    let args = attr::parse(args, &errors);
    let only_structs = format!("{} can only be applied to a struct", kind.attribute());
    let krate: syn::Path = match &args.krate.value {
        Some(Spanned { value, .. }) => value.clone(),
        None => syn::parse_quote!(::rayai),
    };
    let parsed = syn::parse2::<Item>(input.clone());
    let generated = match &parsed {
        Ok(Item::Struct(item)) => deploy(kind, item, args, source_file, &errors),
        Ok(other) => {
            errors.error_spanned_by(head(other), &only_structs);
            None
        }
        Err(_) => {
            errors.error_at(Span::call_site(), &only_structs);
            None
        }
    };
    match errors.check() {
        Ok(()) => quote!(#input #generated),
        Err(error) => {
            let error = error.into_compile_error();
            let placeholder = match &parsed {
                Ok(Item::Struct(item)) => placeholder(&krate, item),
                _ => None,
            };
            quote!(#input #error #placeholder)
        }
    }
}

/// On an error, an `impl Deploy` that compiles but is never used (the program does not build),
/// so that code naming the struct (`App::agent::<Echo>()`) does not add errors of its own to
/// ours. None for a generic struct, which cannot have one.
fn placeholder(krate: &syn::Path, item: &ItemStruct) -> Option<TokenStream> {
    if !item.generics.params.is_empty() {
        return None;
    }
    let ident = &item.ident;
    Some(quote! {
        #[automatically_derived]
        impl #krate::Deploy for #ident {
            fn config() -> #krate::DeploymentConfig {
                #krate::DeploymentConfig::new(::core::stringify!(#ident))
            }

            fn construct(
                _: #krate::ReplicaContext,
            ) -> #krate::__private::BoxFuture<
                'static,
                ::core::result::Result<Self, #krate::AgentError>,
            > {
                ::core::unreachable!("the #[agent] arguments of this struct have errors")
            }
        }
    })
}

/// The `impl Deploy` and the registration for `item`, or `None` (with errors recorded).
fn deploy(
    kind: Kind,
    item: &ItemStruct,
    args: Args,
    source_file: Option<&Path>,
    errors: &Errors,
) -> Option<TokenStream> {
    if !item.generics.params.is_empty() {
        errors.error_spanned_by(
            &item.generics,
            format!("{} does not support generic structs", kind.attribute()),
        );
        return None;
    }
    let ident = &item.ident;
    let name = match args.name.value {
        Some(Spanned { value, span }) => LitStr::new(&value, span),
        None => match naming::default_name(source_file, &ident.unraw().to_string()) {
            Ok(name) => LitStr::new(&name, ident.span()),
            Err(error) => {
                errors.error_spanned_by(ident, error);
                return None;
            }
        },
    };
    // A wrong argument: no `impl` at all, rather than one built from what was right.
    if !errors.is_empty() {
        return None;
    }

    let krate = match args.krate.value {
        Some(Spanned { value, .. }) => value,
        None => syn::parse_quote!(::rayai),
    };
    let settings = [
        setting("with_num_cpus", args.num_cpus.value, Literal::f64_suffixed),
        setting("with_num_gpus", args.num_gpus.value, Literal::f64_suffixed),
        setting(
            "with_memory_bytes",
            args.memory_bytes.value,
            Literal::u64_suffixed,
        ),
        args.num_replicas
            .value
            .and_then(|replicas| match replicas.value {
                Replicas::Fixed(n) => setting(
                    "with_num_replicas",
                    Some(Spanned {
                        value: n,
                        span: replicas.span,
                    }),
                    Literal::u32_suffixed,
                ),
                Replicas::Auto => Some(call(
                    "with_autoscaling",
                    quote!(#krate::AutoscalingConfig::auto()),
                )),
            }),
        args.autoscaling.value.map(|autoscaling| {
            call(
                "with_autoscaling",
                autoscaling_config(&krate, autoscaling.value),
            )
        }),
        setting(
            "with_max_ongoing_requests",
            args.max_ongoing_requests.value,
            Literal::u32_suffixed,
        ),
        // `-1`, no limit, is the runtime's default: nothing to set.
        setting(
            "with_max_queued_requests",
            args.max_queued_requests.value.and_then(Spanned::transpose),
            Literal::u32_suffixed,
        ),
        setting(
            "with_backpressure_retry_after",
            args.backpressure_retry_after_s.value,
            Literal::u32_suffixed,
        ),
        args.health_check_period_s
            .value
            .map(|secs| call("with_health_check_period", duration(secs))),
        args.health_check_timeout_s
            .value
            .map(|secs| call("with_health_check_timeout", duration(secs))),
        args.graceful_shutdown_timeout_s
            .value
            .map(|secs| call("with_graceful_shutdown_timeout", duration(secs))),
        args.isolation.value.map(|isolation| {
            let variant = match isolation.value {
                Isolation::Auto => quote!(Auto),
                Isolation::Thread => quote!(Thread),
                Isolation::Shared => quote!(Shared),
            };
            call("with_isolation", quote!(#krate::Isolation::#variant))
        }),
    ];
    let where_clause = &item.generics.where_clause;
    let registration = (kind == Kind::Agent).then(|| {
        quote! {
            #krate::__private::inventory::submit! {
                #krate::__private::Registration::new(
                    #name,
                    #krate::__private::agent_deployment::<#ident>,
                )
            }
        }
    });

    Some(quote! {
        #[automatically_derived]
        impl #krate::Deploy for #ident #where_clause {
            fn config() -> #krate::DeploymentConfig {
                #krate::DeploymentConfig::new(#name) #(#settings)*
            }

            fn construct(
                ctx: #krate::ReplicaContext,
            ) -> #krate::__private::BoxFuture<
                'static,
                ::core::result::Result<Self, #krate::AgentError>,
            > {
                // Autoref specialisation: `Construct` if implemented, else `Default`, else a
                // marker that `constructor` refuses with one error saying what to do.
                #[allow(unused_imports)]
                use #krate::__private::{ViaConstruct as _, ViaDefault as _, ViaNothing as _};
                #krate::__private::constructor::<Self, _>(
                    (&&#krate::__private::Maker::<Self>::new()).construct(ctx),
                )
            }
        }

        #registration
    })
}

/// `.method(value)` for an argument the user gave, with the value at the user's span.
fn setting<T>(
    method: &str,
    arg: Option<Spanned<T>>,
    literal: fn(T) -> Literal,
) -> Option<TokenStream> {
    let value = spanned_literal(arg?, literal);
    Some(call(method, value.into_token_stream()))
}

/// `.method(value)`.
fn call(method: &str, value: TokenStream) -> TokenStream {
    let method = syn::Ident::new(method, Span::call_site());
    quote!(.#method(#value))
}

/// The literal for `arg`, at the user's span.
fn spanned_literal<T>(Spanned { value, span }: Spanned<T>, literal: fn(T) -> Literal) -> Literal {
    let mut value = literal(value);
    value.set_span(span);
    value
}

/// A `Duration` of `secs` seconds, already checked to be one that `from_secs_f64` accepts.
fn duration(secs: Spanned<f64>) -> TokenStream {
    let secs = spanned_literal(secs, Literal::f64_suffixed);
    quote!(::core::time::Duration::from_secs_f64(#secs))
}

/// The `AutoscalingConfig` that `autoscaling(...)` describes: the bounds and target, then only
/// the settings given.
fn autoscaling_config(krate: &syn::Path, autoscaling: Autoscaling) -> TokenStream {
    let Autoscaling {
        min_replicas,
        max_replicas,
        target_ongoing_requests,
        upscale_delay_s,
        downscale_delay_s,
        initial_replicas,
    } = autoscaling;
    let min = spanned_literal(min_replicas, Literal::u32_suffixed);
    let max = spanned_literal(max_replicas, Literal::u32_suffixed);
    // Ray Serve's default target of ongoing requests per replica.
    let target = target_ongoing_requests.map_or_else(
        || Literal::f64_suffixed(2.0),
        |target| spanned_literal(target, Literal::f64_suffixed),
    );
    let settings = [
        upscale_delay_s.map(|secs| call("with_upscale_delay", duration(secs))),
        downscale_delay_s.map(|secs| call("with_downscale_delay", duration(secs))),
        setting(
            "with_initial_replicas",
            initial_replicas,
            Literal::u32_suffixed,
        ),
    ];
    quote!(#krate::AutoscalingConfig::new(#min, #max, #target) #(#settings)*)
}

/// The tokens an error about the kind of item points at: its keyword and name, where it has them.
fn head(item: &Item) -> TokenStream {
    match item {
        Item::Enum(item) => join(&item.enum_token, &item.ident),
        Item::Fn(item) => join(&item.sig.fn_token, &item.sig.ident),
        Item::Union(item) => join(&item.union_token, &item.ident),
        Item::Trait(item) => join(&item.trait_token, &item.ident),
        Item::TraitAlias(item) => join(&item.trait_token, &item.ident),
        Item::Type(item) => join(&item.type_token, &item.ident),
        Item::Mod(item) => join(&item.mod_token, &item.ident),
        Item::Const(item) => join(&item.const_token, &item.ident),
        Item::Static(item) => join(&item.static_token, &item.ident),
        Item::ExternCrate(item) => join(&item.crate_token, &item.ident),
        Item::Impl(item) => join(&item.impl_token, &item.self_ty),
        Item::Use(item) => item.use_token.to_token_stream(),
        Item::ForeignMod(item) => item.abi.to_token_stream(),
        Item::Macro(item) => item.mac.path.to_token_stream(),
        _ => item.to_token_stream(),
    }
}

/// `keyword name`, for an error span that covers both.
fn join(keyword: &impl ToTokens, name: &impl ToTokens) -> TokenStream {
    quote!(#keyword #name)
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    /// The expansion as a string with the token spacing `quote` gives it.
    fn expand(args: TokenStream, input: TokenStream, file: Option<&str>) -> String {
        agent(args, input, file.map(Path::new)).to_string()
    }

    fn compact(tokens: &str) -> String {
        tokens.split_whitespace().collect()
    }

    #[test]
    fn emits_the_struct_an_impl_and_a_registration() {
        let out = compact(&expand(
            quote!(),
            quote!(
                struct EchoAgent;
            ),
            None,
        ));
        assert!(out.starts_with("structEchoAgent;"), "{out}");
        assert!(out.contains("impl::rayai::DeployforEchoAgent{"), "{out}");
        assert!(
            out.contains("::rayai::DeploymentConfig::new(\"echo_agent\")}"),
            "{out}"
        );
        assert!(out.contains("(&&::rayai::__private::Maker::<Self>::new()).construct(ctx)"));
        assert!(out.contains(
            "::rayai::__private::inventory::submit!{::rayai::__private::Registration::new(\
             \"echo_agent\",::rayai::__private::agent_deployment::<EchoAgent>,)}"
        ));
    }

    #[test]
    fn sets_only_the_arguments_given() {
        let out = compact(&expand(
            quote!(num_cpus = 1, memory = "1KB", max_queued_requests = 3),
            quote!(
                struct A {
                    x: u8,
                }
            ),
            None,
        ));
        assert!(
            out.contains(
                "::rayai::DeploymentConfig::new(\"a\").with_num_cpus(1f64)\
                 .with_memory_bytes(1024u64).with_max_queued_requests(3u32)}"
            ),
            "{out}"
        );
    }

    #[test]
    fn unbounded_queue_sets_nothing() {
        let out = expand(
            quote!(max_queued_requests = -1),
            quote!(
                struct A;
            ),
            None,
        );
        assert!(!out.contains("with_max_queued_requests"), "{out}");
    }

    #[test]
    fn crate_argument_replaces_every_path() {
        let out = compact(&expand(
            quote!(crate = "rayai_core"),
            quote!(
                struct A(u8);
            ),
            None,
        ));
        assert!(!out.contains("::rayai::"), "{out}");
        assert!(out.contains("implrayai_core::DeployforA"), "{out}");
        assert!(
            out.contains("rayai_core::__private::inventory::submit!"),
            "{out}"
        );
    }

    #[test]
    fn name_comes_from_the_agents_file() {
        let out = expand(
            quote!(),
            quote!(
                struct Forecast;
            ),
            Some("src/agents/weather.rs"),
        );
        assert!(
            out.contains("DeploymentConfig :: new (\"weather\")"),
            "{out}"
        );
        let out = expand(
            quote!(name = "w"),
            quote!(
                struct F;
            ),
            Some("agents/weather.rs"),
        );
        assert!(out.contains("DeploymentConfig :: new (\"w\")"), "{out}");
    }

    #[test]
    fn raw_struct_names_lose_their_prefix() {
        let out = expand(
            quote!(),
            quote!(
                struct r#Match;
            ),
            None,
        );
        assert!(out.contains("new (\"match\")"), "{out}");
    }

    /// The expansion of a mistake: the item as written, then `compile_error!`s, then at most a
    /// placeholder `impl` whose constructor is unreachable, and no registration.
    fn errors(args: TokenStream, input: TokenStream, file: Option<&str>) -> Vec<String> {
        let out = agent(args, input.clone(), file.map(Path::new));
        let out = out.to_string();
        let rest = out
            .strip_prefix(&input.to_string())
            .unwrap_or_else(|| panic!("the item is not emitted first: {out}"))
            .trim();
        let (rest, placeholder) = match rest.find("# [automatically_derived]") {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        assert!(!rest.contains("impl"), "{rest}");
        assert!(
            placeholder.is_empty() || placeholder.contains("unreachable !"),
            "{placeholder}"
        );
        assert!(!out.contains("inventory"), "{out}");
        let messages: Vec<String> = rest
            .split(":: core :: compile_error !")
            .filter(|part| !part.trim().is_empty())
            .map(|part| part.trim().to_string())
            .collect();
        assert!(!messages.is_empty(), "no error in {out}");
        messages
    }

    #[test]
    fn argument_errors_emit_only_a_placeholder_impl() {
        let messages = errors(
            quote!(num_replicas = 0),
            quote!(
                struct A;
            ),
            None,
        );
        assert_eq!(messages, ["{ \"num_replicas must be at least 1\" }"]);
    }

    #[test]
    fn num_replicas_auto_sets_default_autoscaling() {
        let out = compact(&expand(
            quote!(num_replicas = "auto"),
            quote!(
                struct A;
            ),
            None,
        ));
        assert!(
            out.contains(
                "::rayai::DeploymentConfig::new(\"a\")\
                 .with_autoscaling(::rayai::AutoscalingConfig::auto())}"
            ),
            "{out}"
        );
        assert!(!out.contains("with_num_replicas"), "{out}");
    }

    #[test]
    fn autoscaling_sets_only_the_settings_given() {
        let out = compact(&expand(
            quote!(autoscaling(
                initial_replicas = 1,
                max_replicas = 4,
                downscale_delay_s = 5,
                min_replicas = 0,
                target_ongoing_requests = 3,
                upscale_delay_s = 1.5,
            )),
            quote!(
                struct A;
            ),
            None,
        ));
        assert!(
            out.contains(
                "::rayai::DeploymentConfig::new(\"a\")\
                 .with_autoscaling(::rayai::AutoscalingConfig::new(0u32,4u32,3f64)\
                 .with_upscale_delay(::core::time::Duration::from_secs_f64(1.5f64))\
                 .with_downscale_delay(::core::time::Duration::from_secs_f64(5f64))\
                 .with_initial_replicas(1u32))}"
            ),
            "{out}"
        );

        let out = compact(&expand(
            quote!(autoscaling(min_replicas = 1, max_replicas = 2)),
            quote!(
                struct A;
            ),
            None,
        ));
        assert!(
            out.contains(".with_autoscaling(::rayai::AutoscalingConfig::new(1u32,2u32,2f64))}"),
            "{out}"
        );
    }

    #[test]
    fn autoscaling_follows_the_crate_argument() {
        for args in [
            quote!(crate = "rayai_core", num_replicas = "auto"),
            quote!(
                crate = "rayai_core",
                autoscaling(min_replicas = 1, max_replicas = 2)
            ),
        ] {
            let out = compact(&expand(
                args,
                quote!(
                    struct A;
                ),
                None,
            ));
            assert!(out.contains("(rayai_core::AutoscalingConfig::"), "{out}");
            assert!(!out.contains("::rayai::"), "{out}");
        }
    }

    #[test]
    fn health_and_shutdown_times_are_durations() {
        let out = compact(&expand(
            quote!(
                health_check_period_s = 10,
                health_check_timeout_s = 0.5,
                graceful_shutdown_timeout_s = 0
            ),
            quote!(
                struct A;
            ),
            None,
        ));
        assert!(
            out.contains(
                "::rayai::DeploymentConfig::new(\"a\")\
                 .with_health_check_period(::core::time::Duration::from_secs_f64(10f64))\
                 .with_health_check_timeout(::core::time::Duration::from_secs_f64(0.5f64))\
                 .with_graceful_shutdown_timeout(::core::time::Duration::from_secs_f64(0f64))}"
            ),
            "{out}"
        );
    }

    #[test]
    fn autoscaling_errors_emit_only_a_placeholder_impl() {
        for args in [
            quote!(
                num_replicas = 2,
                autoscaling(min_replicas = 1, max_replicas = 4)
            ),
            quote!(autoscaling(min_replicas = 1)),
            quote!(autoscaling(min_replicas = 2, max_replicas = 1)),
            quote!(autoscaling = 4),
            quote!(health_check_period_s = 0),
        ] {
            let messages = errors(
                args,
                quote!(
                    struct A;
                ),
                None,
            );
            assert_eq!(messages.len(), 1, "{messages:?}");
        }
    }

    #[test]
    fn refuses_items_other_than_structs() {
        for item in [
            quote!(
                enum E {
                    A,
                }
            ),
            quote!(
                fn f() {}
            ),
            quote!(union U { a: u8 }),
            quote!(
                trait T {}
            ),
            quote!(impl A {}),
            quote!(
                mod m {}
            ),
        ] {
            let messages = errors(quote!(), item, None);
            assert_eq!(
                messages,
                ["{ \"#[agent] can only be applied to a struct\" }"]
            );
        }
    }

    #[test]
    fn refuses_generic_structs() {
        for item in [
            quote!(
                struct A<T>(T);
            ),
            quote!(
                struct A<'a>(&'a str);
            ),
            quote!(
                struct A<const N: usize>;
            ),
        ] {
            let messages = errors(quote!(), item, None);
            assert_eq!(
                messages,
                ["{ \"#[agent] does not support generic structs\" }"]
            );
        }
    }

    #[test]
    fn reports_argument_and_item_errors_together() {
        let messages = errors(
            quote!(numcpus = 1, memory = "2 potatoes"),
            quote!(
                enum E {}
            ),
            None,
        );
        assert_eq!(messages.len(), 3, "{messages:?}");
    }

    #[test]
    fn refuses_a_default_name_that_is_not_url_safe() {
        let messages = errors(
            quote!(),
            quote!(
                struct A;
            ),
            Some("agents/web+search.rs"),
        );
        assert_eq!(messages.len(), 1);
        assert!(messages[0].contains("web+search"), "{messages:?}");
    }

    #[test]
    fn a_given_name_overrides_a_bad_file_name() {
        let out = expand(
            quote!(name = "search"),
            quote!(
                struct A;
            ),
            Some("agents/web+search.rs"),
        );
        assert!(out.contains("new (\"search\")"), "{out}");
    }
}
