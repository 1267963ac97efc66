//! Parsing: the attribute arguments (`backend = "..."`) and the checks on the function
//! the attribute decorates.
//!
//! Everything here works on `proc_macro2` types so that it can be unit-tested.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::{Attribute, Error, Expr, ExprLit, ItemFn, Lit, LitStr, Result};

/// Which macro is being expanded; used for error messages and the checks that differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Main,
    Test,
}

impl Kind {
    /// How the user wrote the attribute, for error messages.
    pub(crate) fn attr(self) -> &'static str {
        match self {
            Kind::Main => "#[xev::main]",
            Kind::Test => "#[xev::test]",
        }
    }
}

/// A backend that can be named in `backend = "..."`; mirrors `xev::Backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    IoUring,
    Epoll,
    Kqueue,
    Iocp,
}

impl Backend {
    const ALL: [Backend; 4] = [
        Backend::IoUring,
        Backend::Epoll,
        Backend::Kqueue,
        Backend::Iocp,
    ];

    /// The string accepted in the attribute (the same as `xev::Backend::name`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::IoUring => "io_uring",
            Backend::Epoll => "epoll",
            Backend::Kqueue => "kqueue",
            Backend::Iocp => "iocp",
        }
    }

    /// The variant of `::xev::Backend` it stands for.
    pub(crate) fn variant(self) -> &'static str {
        match self {
            Backend::IoUring => "IoUring",
            Backend::Epoll => "Epoll",
            Backend::Kqueue => "Kqueue",
            Backend::Iocp => "Iocp",
        }
    }

    fn from_name(name: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// What the `backend` option asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BackendChoice {
    /// No `backend` option: whatever `::xev::rt::Builder::new()` picks.
    Default,
    /// `backend = "io_uring"` and friends.
    One(Backend),
    /// `backend = "all"` (tests only): once per `::xev::Backend::available()`.
    All,
}

/// The parsed attribute arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) backend: BackendChoice,
    /// `threads = N` (`#[xev::main]` only): run on a `Pool` of N workers.
    pub(crate) threads: Option<usize>,
}

/// Parses the tokens inside `#[xev::main(...)]` / `#[xev::test(...)]`.
pub(crate) fn parse_options(kind: Kind, attr: TokenStream) -> Result<Options> {
    let mut backend: Option<BackendChoice> = None;
    let mut threads: Option<usize> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("threads") {
            if kind != Kind::Main {
                return Err(meta.error(format!(
                    "`threads` is only an option of #[xev::main], not of {}",
                    kind.attr()
                )));
            }
            if threads.is_some() {
                return Err(meta.error("the `threads` option is given more than once"));
            }
            let value: Expr = meta.value()?.parse()?;
            threads = Some(parse_threads(&value)?);
            Ok(())
        } else if meta.path.is_ident("backend") {
            if backend.is_some() {
                return Err(meta.error("the `backend` option is given more than once"));
            }
            let value: Expr = meta.value()?.parse()?;
            backend = Some(parse_backend(kind, &value)?);
            Ok(())
        } else {
            let name = path_to_string(&meta.path);
            Err(Error::new_spanned(
                &meta.path,
                format!(
                    "unknown option `{name}` for {}; the options are {}",
                    kind.attr(),
                    match kind {
                        Kind::Main => "`backend = \"...\"` and `threads = N`",
                        Kind::Test => "`backend = \"...\"`",
                    }
                ),
            ))
        }
    });
    parser.parse2(attr)?;
    Ok(Options {
        backend: backend.unwrap_or(BackendChoice::Default),
        threads,
    })
}

/// `threads = N`: a positive integer literal.
fn parse_threads(value: &Expr) -> Result<usize> {
    let lit = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i,
        _ => {
            return Err(Error::new_spanned(
                value,
                "`threads` must be an integer literal, e.g. `threads = 4`",
            ))
        }
    };
    match lit.base10_parse::<usize>()? {
        0 => Err(Error::new_spanned(lit, "`threads` must be at least 1")),
        n => Ok(n),
    }
}

fn parse_backend(kind: Kind, value: &Expr) -> Result<BackendChoice> {
    let accepted = accepted_backends(kind);
    let lit: &LitStr = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => s,
        _ => {
            return Err(Error::new_spanned(
                value,
                format!("`backend` must be a string literal, one of {accepted}"),
            ))
        }
    };
    let name = lit.value();
    if name == "all" {
        return match kind {
            Kind::Test => Ok(BackendChoice::All),
            Kind::Main => Err(Error::new_spanned(
                lit,
                "backend = \"all\" is only meaningful for #[xev::test]",
            )),
        };
    }
    match Backend::from_name(&name) {
        Some(b) => Ok(BackendChoice::One(b)),
        None => Err(Error::new_spanned(
            lit,
            format!("unknown backend \"{name}\"; expected one of {accepted}"),
        )),
    }
}

/// `"io_uring", "epoll", "kqueue", "iocp"` (and `"all"` for tests), for error messages.
fn accepted_backends(kind: Kind) -> String {
    let mut names: Vec<String> = Backend::ALL
        .iter()
        .map(|b| format!("\"{}\"", b.name()))
        .collect();
    if kind == Kind::Test {
        names.push("\"all\"".to_owned());
    }
    names.join(", ")
}

fn path_to_string(path: &syn::Path) -> String {
    path.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

/// Parses the decorated item and checks that it is an `async fn` the macro can wrap:
/// no arguments, no generics, not `unsafe`/`const`/`extern`, and (for tests) no second
/// test attribute. All problems found are reported together.
pub(crate) fn parse_fn(kind: Kind, item: TokenStream) -> Result<ItemFn> {
    let f: ItemFn = syn::parse2(item).map_err(|e| {
        Error::new(
            e.span(),
            format!("{} can only be applied to an `async fn`: {e}", kind.attr()),
        )
    })?;
    let mut errors: Vec<Error> = Vec::new();
    let sig = &f.sig;
    if sig.asyncness.is_none() {
        errors.push(Error::new_spanned(
            sig.fn_token,
            "the `async` keyword is missing from the function declaration",
        ));
    }
    let message = format!("{} functions cannot take arguments", kind.attr());
    if !sig.inputs.is_empty() {
        errors.push(Error::new_spanned(&sig.inputs, message));
    } else if let Some(v) = &sig.variadic {
        errors.push(Error::new_spanned(v, message));
    }
    if !sig.generics.params.is_empty() {
        errors.push(Error::new_spanned(
            &sig.generics,
            format!("{} functions cannot be generic", kind.attr()),
        ));
    } else if let Some(w) = &sig.generics.where_clause {
        errors.push(Error::new_spanned(
            w,
            format!("{} functions cannot have a `where` clause", kind.attr()),
        ));
    }
    if let Some(t) = &sig.constness {
        errors.push(Error::new_spanned(
            t,
            format!("{} functions cannot be `const`", kind.attr()),
        ));
    }
    if let Some(t) = &sig.unsafety {
        errors.push(Error::new_spanned(
            t,
            format!("{} functions cannot be `unsafe`", kind.attr()),
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(Error::new_spanned(
            abi,
            format!("{} functions cannot have an `extern` ABI", kind.attr()),
        ));
    }
    if kind == Kind::Test {
        if let Some(attr) = f.attrs.iter().find(|a| is_test_attr(a)) {
            errors.push(Error::new_spanned(
                attr,
                "a second test attribute is given; #[xev::test] already adds #[test], remove this one",
            ));
        }
    }
    match errors.into_iter().reduce(|mut a, b| {
        a.combine(b);
        a
    }) {
        Some(e) => Err(e),
        None => Ok(f),
    }
}

/// `#[test]`, `#[core::prelude::v1::test]`, `#[tokio::test]`, another `#[xev::test]`...
fn is_test_attr(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "test")
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn err<T>(r: Result<T>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn no_options() {
        let o = parse_options(Kind::Test, quote!()).unwrap();
        assert_eq!(o.backend, BackendChoice::Default);
        let o = parse_options(Kind::Main, quote!()).unwrap();
        assert_eq!(o.backend, BackendChoice::Default);
    }

    #[test]
    fn backend_names() {
        for (s, b) in [
            ("io_uring", Backend::IoUring),
            ("epoll", Backend::Epoll),
            ("kqueue", Backend::Kqueue),
            ("iocp", Backend::Iocp),
        ] {
            for kind in [Kind::Main, Kind::Test] {
                let o = parse_options(kind, quote!(backend = #s)).unwrap();
                assert_eq!(o.backend, BackendChoice::One(b));
            }
        }
        let o = parse_options(Kind::Test, quote!(backend = "all")).unwrap();
        assert_eq!(o.backend, BackendChoice::All);
        // A trailing comma is fine.
        let o = parse_options(Kind::Test, quote!(backend = "epoll",)).unwrap();
        assert_eq!(o.backend, BackendChoice::One(Backend::Epoll));
    }

    #[test]
    fn all_is_only_for_tests() {
        let e = err(parse_options(Kind::Main, quote!(backend = "all")));
        assert_eq!(e, "backend = \"all\" is only meaningful for #[xev::test]");
    }

    #[test]
    fn unknown_backend_lists_accepted_ones() {
        let e = err(parse_options(Kind::Test, quote!(backend = "uring")));
        assert!(e.contains("unknown backend \"uring\""), "{e}");
        assert!(
            e.contains(r#""io_uring", "epoll", "kqueue", "iocp", "all""#),
            "{e}"
        );
        let e = err(parse_options(Kind::Main, quote!(backend = "uring")));
        assert!(
            e.contains(r#""io_uring", "epoll", "kqueue", "iocp""#),
            "{e}"
        );
        assert!(!e.contains("\"all\""), "{e}");
    }

    #[test]
    fn non_string_backend() {
        for value in [quote!(io_uring), quote!(1), quote!(Backend::Epoll)] {
            let e = err(parse_options(Kind::Test, quote!(backend = #value)));
            assert!(e.starts_with("`backend` must be a string literal"), "{e}");
        }
        // `backend` with no value at all
        let e = err(parse_options(Kind::Test, quote!(backend)));
        assert!(e.contains('='), "{e}");
    }

    #[test]
    fn unknown_and_repeated_options() {
        let e = err(parse_options(Kind::Main, quote!(flavor = "current_thread")));
        assert!(
            e.starts_with("unknown option `flavor` for #[xev::main]"),
            "{e}"
        );
        let e = err(parse_options(Kind::Test, quote!(crate = "xev")));
        assert!(
            e.starts_with("unknown option `crate` for #[xev::test]"),
            "{e}"
        );
        let e = err(parse_options(
            Kind::Test,
            quote!(backend = "epoll", backend = "io_uring"),
        ));
        assert!(e.contains("more than once"), "{e}");
    }

    #[test]
    fn accepts_plain_async_fns() {
        let f = parse_fn(Kind::Test, quote! { async fn t() {} }).unwrap();
        assert_eq!(f.sig.ident, "t");
        let f = parse_fn(
            Kind::Main,
            quote! { pub async fn main() -> std::io::Result<()> { Ok(()) } },
        )
        .unwrap();
        assert_eq!(f.sig.ident, "main");
    }

    #[test]
    fn rejects_misuse() {
        let e = err(parse_fn(Kind::Test, quote! { fn t() {} }));
        assert_eq!(
            e,
            "the `async` keyword is missing from the function declaration"
        );
        let e = err(parse_fn(Kind::Main, quote! { async fn main(x: u32) {} }));
        assert_eq!(e, "#[xev::main] functions cannot take arguments");
        let e = err(parse_fn(Kind::Test, quote! { async fn t<T>() {} }));
        assert_eq!(e, "#[xev::test] functions cannot be generic");
        let e = err(parse_fn(
            Kind::Test,
            quote! { async fn t() where u8: Copy, { } },
        ));
        assert!(e.contains("`where` clause"), "{e}");
        let e = err(parse_fn(Kind::Test, quote! { async unsafe fn t() {} }));
        assert!(e.contains("`unsafe`"), "{e}");
        let e = err(parse_fn(Kind::Test, quote! { struct S; }));
        assert!(
            e.starts_with("#[xev::test] can only be applied to an `async fn`"),
            "{e}"
        );
    }

    #[test]
    fn rejects_a_second_test_attribute() {
        for attr in [
            quote!(#[test]),
            quote!(#[tokio::test]),
            quote!(#[xev::test]),
        ] {
            let e = err(parse_fn(Kind::Test, quote!(#attr async fn t() {})));
            assert!(e.contains("second test attribute"), "{e}");
        }
        // Other attributes are fine.
        parse_fn(
            Kind::Test,
            quote!(
                #[ignore]
                #[should_panic(expected = "x")]
                #[cfg(test)]
                async fn t() {}
            ),
        )
        .unwrap();
    }

    #[test]
    fn reports_every_problem() {
        let Err(e) = parse_fn(Kind::Test, quote! { fn t<T>(x: T) {} }) else {
            panic!("expected an error");
        };
        let messages: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
    }
}
