//! Attribute macros of `weir-guest`: each turns a plain function into a Weir
//! operator component (in a `wasm32` build) and into a native operator value
//! `weir_operator()` (in every build). The function itself is left unchanged
//! so unit tests can call it directly.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{format_ident, quote};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::visit_mut::VisitMut;
use syn::{
    Expr, FnArg, ItemFn, Lit, Meta, PatType, Path, ReturnType, Token, Type, parse_macro_input,
};

/// A map operator: `fn(In) -> Out` or `fn(In) -> Result<Out, E>`; one record
/// out per record in.
#[proc_macro_attribute]
pub fn map(attr: TokenStream, item: TokenStream) -> TokenStream {
    stateless(attr, item, Kind::Map)
}

/// A filter: `fn(&In) -> bool` (or `Result<bool, E>`); kept records pass on
/// unchanged, with every field they had, not just those of `In`.
#[proc_macro_attribute]
pub fn filter(attr: TokenStream, item: TokenStream) -> TokenStream {
    stateless(attr, item, Kind::Filter)
}

/// A filter-map: `fn(In) -> Option<Out>` (or `Result<Option<Out>, E>`).
#[proc_macro_attribute]
pub fn filter_map(attr: TokenStream, item: TokenStream) -> TokenStream {
    stateless(attr, item, Kind::FilterMap)
}

/// A flat-map: `fn(In) -> impl IntoIterator<Item = Out>` (or a `Result` of one).
#[proc_macro_attribute]
pub fn flat_map(attr: TokenStream, item: TokenStream) -> TokenStream {
    stateless(attr, item, Kind::FlatMap)
}

/// A keyed process function: `fn(In, &mut Keyed<S>) -> R`, where `S` is the
/// per-key value state and `R` is a record, `Option`, `Vec`, `()` or a
/// `Result` of one of those.
///
/// Options: `state_version = N` (default 1), `migrate = path` to a
/// `fn(OldState) -> S` used when the previous version's state layout differs,
/// `on_timer = path` to a `fn(&mut Keyed<S>) -> R` called when timers fire,
/// `open = path` to a `fn() -> Result<(), E>` run once when an instance starts.
#[proc_macro_attribute]
pub fn keyed(attr: TokenStream, item: TokenStream) -> TokenStream {
    let function = parse_macro_input!(item as ItemFn);
    match keyed_impl(attr.into(), &function) {
        Ok(generated) => quote!(#function #generated).into(),
        Err(e) => {
            let e = e.to_compile_error();
            quote!(#function #e).into()
        }
    }
}

/// An event-time window aggregate: `fn(&mut Acc, In)` (or returning
/// `Result<(), E>`) adds a record to a window's accumulator `Acc: Default`.
///
/// Options: one of `tumbling = "1d"`, `sliding = "1m", every = "10s"` or
/// `session = "5m"` (then `merge = fn(&mut Acc, Acc)`); `result = path` to a
/// `fn(&str, Window, &Acc) -> R` (`Option` of a record, `Vec`, or a `Result`
/// of one) emitted when
/// the watermark passes the window's end; `allowed_lateness = "0s"`;
/// `late = "late"` (the side output for records later than that);
/// `state_version = N`. Keyed by the pipeline's `key_by`, or global without one.
#[proc_macro_attribute]
pub fn window(attr: TokenStream, item: TokenStream) -> TokenStream {
    let function = parse_macro_input!(item as ItemFn);
    match window_impl(attr.into(), &function) {
        Ok(generated) => quote!(#function #generated).into(),
        Err(e) => {
            let e = e.to_compile_error();
            quote!(#function #e).into()
        }
    }
}

/// The `name = value` options of an attribute, with each name as text.
fn name_values(attr: Tokens) -> syn::Result<Vec<(String, syn::MetaNameValue)>> {
    Punctuated::<Meta, Token![,]>::parse_terminated
        .parse2(attr)?
        .into_iter()
        .map(|meta| match meta {
            Meta::NameValue(nv) => {
                let key = nv
                    .path
                    .get_ident()
                    .map(|i| i.to_string())
                    .unwrap_or_default();
                Ok((key, nv))
            }
            other => Err(syn::Error::new_spanned(other, "expected `name = value`")),
        })
        .collect()
}

/// `weir_operator()`, the operator `operator` as a value (to run it natively
/// in tests and benchmarks), and its export as the component's interface in
/// `wasm32` builds.
fn export_operator(operator: Tokens) -> Tokens {
    quote! {
        /// This crate's operator as a value, to run it natively (tests, benchmarks).
        pub fn weir_operator() -> ::std::boxed::Box<dyn ::weir_guest::Operator> {
            ::std::boxed::Box::new(#operator)
        }

        #[cfg(target_arch = "wasm32")]
        ::weir_guest::__weir_export!(weir_operator);
    }
}

/// Milliseconds of a duration such as `500ms`, `10s`, `5m`, `2h` or `1d`.
fn parse_millis(lit: &syn::LitStr) -> syn::Result<i64> {
    let text = lit.value();
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    let unit = &text[digits.len()..];
    let n: i64 = digits
        .parse()
        .map_err(|_| syn::Error::new_spanned(lit, "expected a duration such as \"10s\""))?;
    let scale = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(syn::Error::new_spanned(
                lit,
                "expected a unit: ms, s, m, h or d",
            ));
        }
    };
    Ok(n * scale)
}

fn window_impl(attr: Tokens, function: &ItemFn) -> syn::Result<Tokens> {
    let (mut tumbling, mut sliding, mut every, mut session) = (None, None, None, None);
    let (mut lateness, mut late, mut result, mut merge, mut version) =
        (0i64, "late".to_owned(), None, None, 1u32);
    for (key, nv) in name_values(attr)? {
        let nv = &nv;
        let text = |v: &Expr| match v {
            Expr::Lit(syn::ExprLit {
                lit: Lit::Str(s), ..
            }) => Ok(s.clone()),
            other => Err(syn::Error::new_spanned(other, "expected a string")),
        };
        match key.as_str() {
            "tumbling" => tumbling = Some(parse_millis(&text(&nv.value)?)?),
            "sliding" => sliding = Some(parse_millis(&text(&nv.value)?)?),
            "every" => every = Some(parse_millis(&text(&nv.value)?)?),
            "session" => session = Some(parse_millis(&text(&nv.value)?)?),
            "allowed_lateness" => lateness = parse_millis(&text(&nv.value)?)?,
            "late" => late = text(&nv.value)?.value(),
            "result" | "merge" => {
                let Expr::Path(p) = &nv.value else {
                    return Err(syn::Error::new_spanned(
                        &nv.value,
                        "expected a function path",
                    ));
                };
                if key == "result" {
                    result = Some(p.path.clone());
                } else {
                    merge = Some(p.path.clone());
                }
            }
            "state_version" => match &nv.value {
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Int(i), ..
                }) => version = i.base10_parse()?,
                other => return Err(syn::Error::new_spanned(other, "expected an integer")),
            },
            _ => {
                return Err(syn::Error::new_spanned(
                    &nv.path,
                    "expected `tumbling`, `sliding`, `every`, `session`, `allowed_lateness`, \
                     `late`, `result`, `merge` or `state_version`",
                ));
            }
        }
    }
    let span = function.sig.ident.span();
    let kind = match (tumbling, sliding, every, session) {
        (Some(size), None, None, None) if size > 0 => {
            quote!(::weir_guest::windows::WindowKind::Tumbling { size: #size })
        }
        (None, Some(size), Some(slide), None) if size > 0 && slide > 0 => {
            quote!(::weir_guest::windows::WindowKind::Sliding { size: #size, slide: #slide })
        }
        (None, None, None, Some(gap)) if gap > 0 => {
            if merge.is_none() {
                return Err(syn::Error::new(
                    span,
                    "a session window needs `merge = path`",
                ));
            }
            quote!(::weir_guest::windows::WindowKind::Session { gap: #gap })
        }
        _ => {
            return Err(syn::Error::new(
                span,
                "give one of `tumbling = \"1d\"`, `sliding = \"1m\", every = \"10s\"` or \
                 `session = \"5m\"` (non-zero)",
            ));
        }
    };
    let Some(result) = result else {
        return Err(syn::Error::new(span, "a window needs `result = path`"));
    };
    let args = typed_args(function);
    let [acc_arg, input_arg] = args.as_slice() else {
        return Err(syn::Error::new_spanned(
            &function.sig,
            "a window's add function takes `&mut Acc` and the input record",
        ));
    };
    let acc_ty = match &*acc_arg.ty {
        Type::Reference(r) if r.mutability.is_some() => (*r.elem).clone(),
        other => {
            return Err(syn::Error::new_spanned(other, "expected `&mut Acc`"));
        }
    };
    let (input_ty, by_ref) = input_type(input_arg);
    let pass = if by_ref {
        quote!(&input)
    } else {
        quote!(input)
    };
    let name = &function.sig.ident;
    let merge = match merge {
        Some(path) => quote!(::core::option::Option::Some(#path)),
        None => quote!(::core::option::Option::None),
    };
    let export = export_operator(quote!(::weir_guest::__private::KeyedOp::new(
        __WeirWindowFn
    )));
    Ok(quote! {
        #[doc(hidden)]
        struct __WeirWindowFn;

        const __WEIR_WINDOW: ::weir_guest::windows::WindowSpec = ::weir_guest::windows::WindowSpec {
            kind: #kind,
            allowed_lateness: #lateness,
            late_output: #late,
        };

        impl ::weir_guest::__private::KeyedFn for __WeirWindowFn {
            type State = ::weir_guest::windows::WindowState<#acc_ty>;
            const STATE_VERSION: u32 = #version;

            fn call(
                &mut self,
                view: &::weir_guest::BatchView<'_>,
                row: usize,
                ctx: &mut ::weir_guest::Keyed<'_, Self::State>,
            ) -> ::core::result::Result<(), ::weir_guest::Error> {
                ::weir_guest::windows::add_record(
                    &__WEIR_WINDOW,
                    ctx,
                    |acc| {
                        let input: #input_ty = view.record(row)?;
                        ::weir_guest::windows::AddOutcome::into_result(#name(acc, #pass))
                    },
                    #merge,
                    #result,
                    || view.record::<::weir_guest::__private::serde_json::Value>(row),
                )
            }

            fn on_timer(
                &mut self,
                ctx: &mut ::weir_guest::Keyed<'_, Self::State>,
            ) -> ::core::result::Result<(), ::weir_guest::Error> {
                ::weir_guest::windows::fire(&__WEIR_WINDOW, ctx, #result)
            }
        }

        #export
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Map,
    Filter,
    FilterMap,
    FlatMap,
}

fn stateless(attr: TokenStream, item: TokenStream, kind: Kind) -> TokenStream {
    let function = parse_macro_input!(item as ItemFn);
    match stateless_impl(attr.into(), &function, kind) {
        Ok(generated) => quote!(#function #generated).into(),
        Err(e) => {
            let e = e.to_compile_error();
            quote!(#function #e).into()
        }
    }
}

/// Replaces named lifetimes with `'_` so the input type can be written in a
/// `let` whose lifetime the compiler infers from the batch.
struct ElideLifetimes;
impl VisitMut for ElideLifetimes {
    fn visit_lifetime_mut(&mut self, lifetime: &mut syn::Lifetime) {
        if lifetime.ident != "static" {
            *lifetime = syn::Lifetime::new("'_", lifetime.span());
        }
    }
}

fn typed_args(function: &ItemFn) -> Vec<&PatType> {
    function
        .sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(t) => Some(t),
            FnArg::Receiver(_) => None,
        })
        .collect()
}

/// The type to deserialize the record into, and whether the function takes it
/// by reference.
fn input_type(arg: &PatType) -> (Type, bool) {
    let (mut ty, by_ref) = match &*arg.ty {
        Type::Reference(r) => ((*r.elem).clone(), true),
        other => (other.clone(), false),
    };
    ElideLifetimes.visit_type_mut(&mut ty);
    (ty, by_ref)
}

fn last_segment(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

fn returns_result(function: &ItemFn) -> bool {
    match &function.sig.output {
        ReturnType::Type(_, ty) => last_segment(ty).as_deref() == Some("Result"),
        ReturnType::Default => false,
    }
}

fn stateless_impl(attr: Tokens, function: &ItemFn, kind: Kind) -> syn::Result<Tokens> {
    if !attr.is_empty() {
        return Err(syn::Error::new_spanned(
            attr,
            "this attribute takes no options",
        ));
    }
    let args = typed_args(function);
    let [arg] = args.as_slice() else {
        return Err(syn::Error::new_spanned(
            &function.sig,
            "a stateless operator takes exactly one argument: the input record",
        ));
    };
    let name = &function.sig.ident;
    let (input_ty, by_ref) = input_type(arg);
    let pass = if by_ref {
        quote!(&input)
    } else {
        quote!(input)
    };
    let call = if returns_result(function) {
        quote!(#name(#pass).map_err(|e| ::weir_guest::Error::new(e.to_string()))?)
    } else {
        quote!(#name(#pass))
    };
    let body = match kind {
        Kind::Map => quote! { let out = #call; emit.emit(&out) },
        Kind::Filter => quote! {
            if #call { emit.keep(); }
            Ok(())
        },
        Kind::FilterMap => quote! {
            if let Some(out) = #call { emit.emit(&out)?; }
            Ok(())
        },
        Kind::FlatMap => quote! {
            for out in #call { emit.emit(&out)?; }
            Ok(())
        },
    };
    let row_fn = format_ident!("__WeirRowFn");
    let export = export_operator(quote!(::weir_guest::__private::Stateless(#row_fn)));
    Ok(quote! {
        #[doc(hidden)]
        struct #row_fn;

        impl ::weir_guest::__private::RowFn for #row_fn {
            fn call(
                &mut self,
                view: &::weir_guest::BatchView<'_>,
                row: usize,
                emit: &mut ::weir_guest::__private::Emitter,
            ) -> ::core::result::Result<(), ::weir_guest::Error> {
                let input: #input_ty = view.record(row)?;
                #body
            }
        }

        #export
    })
}

struct KeyedOptions {
    state_version: u32,
    migrate: Option<Path>,
    on_timer: Option<Path>,
    open: Option<Path>,
}

fn keyed_options(attr: Tokens) -> syn::Result<KeyedOptions> {
    let mut options = KeyedOptions {
        state_version: 1,
        migrate: None,
        on_timer: None,
        open: None,
    };
    for (key, nv) in name_values(attr)? {
        let nv = &nv;
        match (key.as_str(), &nv.value) {
            ("state_version", Expr::Lit(lit)) => match &lit.lit {
                Lit::Int(i) => options.state_version = i.base10_parse()?,
                _ => return Err(syn::Error::new_spanned(lit, "expected an integer")),
            },
            ("migrate", Expr::Path(p)) => options.migrate = Some(p.path.clone()),
            ("on_timer", Expr::Path(p)) => options.on_timer = Some(p.path.clone()),
            ("open", Expr::Path(p)) => options.open = Some(p.path.clone()),
            _ => {
                return Err(syn::Error::new_spanned(
                    &nv.path,
                    "expected `state_version = N`, `migrate = path`, `on_timer = path` or \
                     `open = path`",
                ));
            }
        }
    }
    Ok(options)
}

/// `S` in `&mut Keyed<S>` / `&mut Keyed<'_, S>`.
fn state_type(arg: &PatType) -> syn::Result<Type> {
    let error = || {
        syn::Error::new_spanned(
            &arg.ty,
            "the second argument of a keyed operator must be `&mut Keyed<State>`",
        )
    };
    let Type::Reference(r) = &*arg.ty else {
        return Err(error());
    };
    let Type::Path(p) = &*r.elem else {
        return Err(error());
    };
    let segment = p.path.segments.last().ok_or_else(error)?;
    let syn::PathArguments::AngleBracketed(generics) = &segment.arguments else {
        return Err(error());
    };
    generics
        .args
        .iter()
        .rev()
        .find_map(|a| match a {
            syn::GenericArgument::Type(t) => Some(t.clone()),
            _ => None,
        })
        .ok_or_else(error)
}

/// Whether a return type is a single record rather than `()`, `Option`,
/// `Vec` or `Result`.
fn is_plain_record(ty: &Type) -> bool {
    match ty {
        Type::Tuple(t) if t.elems.is_empty() => false,
        ty => !matches!(
            last_segment(ty).as_deref(),
            Some("Option" | "Vec" | "Result")
        ),
    }
}

/// `T` in `Result<T, E>`.
fn result_ok_type(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let syn::PathArguments::AngleBracketed(args) = &p.path.segments.last()?.arguments else {
        return None;
    };
    args.args.iter().find_map(|a| match a {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    })
}

fn keyed_impl(attr: Tokens, function: &ItemFn) -> syn::Result<Tokens> {
    let options = keyed_options(attr)?;
    let args = typed_args(function);
    let [input_arg, ctx_arg] = args.as_slice() else {
        return Err(syn::Error::new_spanned(
            &function.sig,
            "a keyed operator takes two arguments: the input record and `&mut Keyed<State>`",
        ));
    };
    let name = &function.sig.ident;
    let (input_ty, by_ref) = input_type(input_arg);
    let pass = if by_ref {
        quote!(&input)
    } else {
        quote!(input)
    };
    let state_ty = state_type(ctx_arg)?;
    let version = options.state_version;
    // A plain record (or a `Result` of one) is emitted as is; `Option`,
    // `Vec` and `()` (or a `Result` of one of them) go through `IntoRecords`.
    let emit = match &function.sig.output {
        ReturnType::Type(_, ty) if is_plain_record(ty) => quote! {
            let out = #name(#pass, ctx);
            ctx.emit(&out)
        },
        ReturnType::Type(_, ty)
            if last_segment(ty).as_deref() == Some("Result")
                && result_ok_type(ty).is_some_and(is_plain_record) =>
        {
            quote! {
                match #name(#pass, ctx) {
                    ::core::result::Result::Ok(out) => ctx.emit(&out),
                    ::core::result::Result::Err(e) => {
                        ::core::result::Result::Err(::weir_guest::Error::new(e.to_string()))
                    }
                }
            }
        }
        _ => quote! {
            let out = #name(#pass, ctx);
            ::weir_guest::__private::IntoRecords::emit_into(out, ctx.__emitter())
        },
    };
    let on_timer = options.on_timer.map(|path| {
        quote! {
            fn on_timer(
                &mut self,
                ctx: &mut ::weir_guest::Keyed<'_, Self::State>,
            ) -> ::core::result::Result<(), ::weir_guest::Error> {
                let out = #path(ctx);
                ::weir_guest::__private::IntoRecords::emit_into(out, ctx.__emitter())
            }
        }
    });
    let migrate = options.migrate.map(|path| {
        quote! {
            fn migrate(
                &mut self,
                _from_version: u32,
                state: &[u8],
            ) -> ::core::result::Result<::std::vec::Vec<u8>, ::weir_guest::Error> {
                ::weir_guest::__private::migrate_with(#path, state)
            }
        }
    });
    let open = options.open.map(|path| {
        quote! {
            fn open(&mut self) -> ::core::result::Result<(), ::weir_guest::Error> {
                #path().map_err(|e| ::weir_guest::Error::new(e.to_string()))
            }
        }
    });
    let keyed_fn = syn::Ident::new("__WeirKeyedFn", Span::call_site());
    let export = export_operator(quote!(::weir_guest::__private::KeyedOp::new(#keyed_fn)));
    Ok(quote! {
        #[doc(hidden)]
        struct #keyed_fn;

        impl ::weir_guest::__private::KeyedFn for #keyed_fn {
            type State = #state_ty;
            const STATE_VERSION: u32 = #version;

            fn call(
                &mut self,
                view: &::weir_guest::BatchView<'_>,
                row: usize,
                ctx: &mut ::weir_guest::Keyed<'_, Self::State>,
            ) -> ::core::result::Result<(), ::weir_guest::Error> {
                let input: #input_ty = view.record(row)?;
                #emit
            }

            #on_timer
            #migrate
            #open
        }

        #export
    })
}
