//! Expansion: turns a checked `async fn` into a synchronous `fn` that drives its body on
//! an xev runtime.
//!
//! The generated code names only these items of the `xev` crate:
//!
//! - `::xev::rt::Builder::new()`, `.backend(::xev::Backend)`, `.build()` returning a
//!   `Result<Runtime, E: Debug>`, and `Runtime::block_on(future) -> future's output`
//!   (called on the temporary, so `self`, `&self` and `&mut self` all work);
//! - `::xev::Backend::{IoUring, Epoll, Kqueue, Iocp}`, `Backend::is_available(self)` and
//!   `Backend::available()` (anything `IntoIterator<Item = Backend>`), with
//!   `Backend: Copy + Debug`.
//!
//! Locals the expansion introduces use `Span::mixed_site()`, so user locals cannot clash
//! with them, and a `__xev_` prefix, so that an item in scope (a `const` named like a
//! binding would be taken as a pattern) is very unlikely to. Paths are absolute
//! (`::std::`, `::core::`, `::xev::`) and the test attribute is
//! `#[::core::prelude::v1::test]`, which works even with `use xev::test;` in scope.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Ident, ItemFn, ReturnType};

use crate::options::{parse_fn, parse_options, BackendChoice, Kind, Options};

/// `#[xev::main]`: the expansion, or compile errors followed by the untouched item.
pub(crate) fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Main, attr, item)
}

/// `#[xev::test]`: the expansion, or compile errors followed by the untouched item.
pub(crate) fn test(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Test, attr, item)
}

fn expand(kind: Kind, attr: TokenStream, item: TokenStream) -> TokenStream {
    let options = parse_options(kind, attr);
    let function = parse_fn(kind, item.clone());
    match (options, function) {
        (Ok(options), Ok(function)) => match kind {
            Kind::Main => expand_main(options, function),
            Kind::Test => expand_test(options, function),
        },
        (options, function) => {
            // Report the attribute's and the function's problems together, and keep the
            // item so that the rest of the crate still resolves its name.
            let mut errors = TokenStream::new();
            if let Err(e) = options {
                errors.extend(e.to_compile_error());
            }
            if let Err(e) = function {
                errors.extend(e.to_compile_error());
            }
            errors.extend(item);
            errors
        }
    }
}

/// A local identifier of the expansion, invisible to user code.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// `::xev::rt::Builder::new()`, plus `.backend(...)` when one was asked for.
fn builder(backend: Option<TokenStream>) -> TokenStream {
    let backend = backend.map(|b| quote!(.backend(#b)));
    quote!(::xev::rt::Builder::new() #backend)
}

/// `::xev::Backend::IoUring` etc.
fn backend_path(b: crate::options::Backend) -> TokenStream {
    let variant = format_ident!("{}", b.variant());
    quote!(::xev::Backend::#variant)
}

fn expand_main(options: Options, function: ItemFn) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = function;
    sig.asyncness = None;
    let backend = match options.backend {
        BackendChoice::Default => None,
        BackendChoice::One(b) => Some(backend_path(b)),
        BackendChoice::All => unreachable!("rejected while parsing"),
    };
    let builder = builder(backend);
    let body = local("__xev_body");
    if let Some(n) = options.threads {
        // The body is built and run on worker 0 of a pool of `n` (so it need not be
        // `Send`); this thread blocks until it returns.
        return quote! {
            #(#attrs)*
            #vis #sig {
                #builder
                    .threads(#n)
                    .build_pool()
                    .expect("xev::main: failed to build the worker pool")
                    .block_on(move || async move #block)
            }
        };
    }
    quote! {
        #(#attrs)*
        #vis #sig {
            let #body = async move #block;
            #builder
                .build()
                .expect("xev::main: failed to build the runtime")
                .block_on(#body)
        }
    }
}

fn expand_test(options: Options, function: ItemFn) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function;
    let name = &sig.ident;
    let test = TestBody::new(&sig, &block);
    let run = match options.backend {
        BackendChoice::Default => test.run_default(),
        BackendChoice::One(b) => test.run_one(b),
        BackendChoice::All => test.run_all(),
    };
    // The full path keeps working when the user has `use xev::test;` in scope.
    quote! {
        #[::core::prelude::v1::test]
        #(#attrs)*
        #vis fn #name() {
            #run
        }
    }
}

/// The pieces shared by the three ways of running a test body.
struct TestBody {
    /// The test's name, for messages.
    name: String,
    /// Defines `__xev_body`, a closure returning a fresh future of the user's block.
    make_body: TokenStream,
    /// The span of the return type, when there is one (a `Result` to check).
    returns: Option<Span>,
}

impl TestBody {
    fn new(sig: &syn::Signature, block: &syn::Block) -> TestBody {
        let (output_ty, returns) = match &sig.output {
            ReturnType::Default => (quote!(()), None),
            ReturnType::Type(_, ty) => (ty.to_token_stream(), Some(ty.span())),
        };
        let body = local("__xev_body");
        let typed = local("__xev_typed");
        let future = local("__xev_future");
        // `|| typed(async move { user block })`: a fresh future per run. `typed` pins the
        // output type so that `?` in the body knows what to convert into, without adding
        // code after the block (which would warn as unreachable when the body panics).
        // Spanned at the block, so that a body of the wrong type is reported there.
        let typed_body = quote_spanned! {block.span()=> #typed(async move #block) };
        let make_body = quote! {
            fn #typed<F: ::core::future::Future<Output = #output_ty>>(#future: F) -> F {
                #future
            }
            let #body = || #typed_body;
        };
        TestBody {
            name: sig.ident.to_string(),
            make_body,
            returns,
        }
    }

    /// `::xev::rt::Builder::new()[.backend(b)].build().expect(..).block_on(__xev_body())`
    fn block_on(&self, backend: Option<TokenStream>) -> TokenStream {
        let builder = builder(backend);
        let body = local("__xev_body");
        quote! {
            #builder
                .build()
                .expect("xev::test: failed to build the runtime")
                .block_on(#body())
        }
    }

    /// Fails the test when the body's `__xev_result` is an `Err`, naming the backend
    /// when known. Spanned at the return type, so that a non-`Result` is reported there.
    fn check_result(&self, backend: Option<&TokenStream>) -> TokenStream {
        let result = local("__xev_result");
        let Some(span) = self.returns else {
            return quote!(let _ = #result;);
        };
        let name = &self.name;
        let e = local("__xev_error");
        let panic = match backend {
            Some(b) => quote! {
                ::std::panic!("xev::test `{}` failed on backend {:?}: {:?}", #name, #b, #e)
            },
            None => quote! {
                ::std::panic!("xev::test `{}` failed: {:?}", #name, #e)
            },
        };
        quote_spanned! {span=>
            if let ::core::result::Result::Err(#e) = #result {
                #panic
            }
        }
    }

    /// No `backend` option: one run on the builder's default backend.
    fn run_default(&self) -> TokenStream {
        let make_body = &self.make_body;
        let result = local("__xev_result");
        let block_on = self.block_on(None);
        let check = self.check_result(None);
        quote! {
            #make_body
            let #result = #block_on;
            #check
        }
    }

    /// `backend = "<name>"`: one run on that backend, or a skip when it is unavailable.
    fn run_one(&self, b: crate::options::Backend) -> TokenStream {
        let (name, make_body) = (&self.name, &self.make_body);
        let path = backend_path(b);
        let b_name = b.name();
        let result = local("__xev_result");
        let block_on = self.block_on(Some(path.clone()));
        let check = self.check_result(Some(&path));
        quote! {
            if !#path.is_available() {
                ::std::eprintln!(
                    "xev::test: {} skipped: backend {} is not available on this system",
                    #name,
                    #b_name,
                );
                return;
            }
            #make_body
            let #result = #block_on;
            #check
        }
    }

    /// `backend = "all"`: one run per available backend, each on a fresh runtime; a
    /// panic is caught and raised again with the backend in its message.
    fn run_all(&self) -> TokenStream {
        let (name, make_body) = (&self.name, &self.make_body);
        let backend = local("__xev_backend");
        let ran = local("__xev_ran");
        let outcome = local("__xev_outcome");
        let result = local("__xev_result");
        let payload = local("__xev_payload");
        let message = local("__xev_message");
        let text = local("__xev_text");
        let block_on = self.block_on(Some(backend.to_token_stream()));
        let check = self.check_result(Some(&backend.to_token_stream()));
        quote! {
            #make_body
            let mut #ran = false;
            for #backend in ::xev::Backend::available() {
                #ran = true;
                ::std::eprintln!("xev::test: {} on {:?}", #name, #backend);
                let #outcome = ::std::panic::catch_unwind(
                    ::std::panic::AssertUnwindSafe(|| #block_on),
                );
                match #outcome {
                    ::core::result::Result::Ok(#result) => {
                        #check
                    }
                    ::core::result::Result::Err(#payload) => {
                        let #message: &str = if let ::core::option::Option::Some(#text) =
                            #payload.downcast_ref::<&'static str>()
                        {
                            #text
                        } else if let ::core::option::Option::Some(#text) =
                            #payload.downcast_ref::<::std::string::String>()
                        {
                            #text.as_str()
                        } else {
                            "non-string panic payload"
                        };
                        ::std::panic!(
                            "xev::test `{}` failed on backend {:?}: {}",
                            #name,
                            #backend,
                            #message,
                        );
                    }
                }
            }
            if !#ran {
                ::std::eprintln!(
                    "xev::test: {} skipped: no backend is available on this system",
                    #name,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expansion as a string without whitespace outside string literals, so that
    /// assertions do not depend on how `quote` spaces tokens.
    fn compact(ts: TokenStream) -> String {
        let mut out = String::new();
        let (mut in_str, mut escaped) = (false, false);
        for c in ts.to_string().chars() {
            if in_str {
                in_str = escaped || c != '"';
                escaped = !escaped && c == '\\';
            } else if c == '"' {
                in_str = true;
            } else if c.is_whitespace() {
                continue;
            }
            out.push(c);
        }
        out
    }

    /// Expands and checks that the result is a single well-formed, non-async `fn`.
    fn expand_ok(kind: Kind, attr: TokenStream, item: TokenStream) -> (ItemFn, String) {
        let out = expand(kind, attr, item);
        let s = out.to_string();
        assert!(!s.contains("compile_error"), "unexpected error: {s}");
        let f: ItemFn = syn::parse2(out.clone()).expect("the expansion is one fn");
        assert!(f.sig.asyncness.is_none());
        assert!(f.sig.inputs.is_empty());
        (f, compact(out))
    }

    fn expand_err(kind: Kind, attr: TokenStream, item: TokenStream) -> String {
        let s = expand(kind, attr, item).to_string();
        assert!(s.contains("compile_error"), "expected an error: {s}");
        s
    }

    #[test]
    fn main_default_backend() {
        let (f, s) = expand_ok(
            Kind::Main,
            quote!(),
            quote! {
                async fn main() {
                    println!("hi");
                }
            },
        );
        assert_eq!(f.sig.ident, "main");
        assert!(matches!(f.sig.output, ReturnType::Default));
        assert!(
            s.contains("let__xev_body=asyncmove{println!(\"hi\");};"),
            "{s}"
        );
        assert!(
            s.contains(
                "::xev::rt::Builder::new().build().expect(\"xev::main: failed to build the runtime\").block_on(__xev_body)"
            ),
            "{s}"
        );
        assert!(!s.contains(".backend("), "{s}");
    }

    #[test]
    fn main_threads_runs_the_body_on_a_pool() {
        let (f, s) = expand_ok(
            Kind::Main,
            quote!(threads = 4, backend = "epoll"),
            quote! {
                async fn main() -> u8 {
                    7
                }
            },
        );
        assert_eq!(f.sig.ident, "main");
        assert!(
            s.contains(
                "::xev::rt::Builder::new().backend(::xev::Backend::Epoll).threads(4usize).build_pool().expect(\"xev::main: failed to build the worker pool\").block_on(move||asyncmove{7})"
            ),
            "{s}"
        );
    }

    #[test]
    fn threads_must_be_a_positive_literal_on_main_only() {
        let item = quote!(
            async fn main() {}
        );
        let s = expand_err(Kind::Main, quote!(threads = 0), item.clone());
        assert!(s.contains("`threads` must be at least 1"), "{s}");
        let s = expand_err(Kind::Main, quote!(threads = n), item.clone());
        assert!(s.contains("`threads` must be an integer literal"), "{s}");
        let s = expand_err(Kind::Main, quote!(threads = 2, threads = 3), item.clone());
        assert!(s.contains("given more than once"), "{s}");
        let s = expand_err(Kind::Test, quote!(threads = 2), item);
        assert!(s.contains("only an option of #[xev::main]"), "{s}");
    }

    #[test]
    fn main_keeps_attributes_visibility_and_return_type() {
        let (f, s) = expand_ok(
            Kind::Main,
            quote!(backend = "io_uring"),
            quote! {
                /// docs
                #[allow(unused)]
                pub async fn start() -> std::io::Result<()> {
                    Ok(())
                }
            },
        );
        assert_eq!(f.sig.ident, "start");
        assert_eq!(f.attrs.len(), 2);
        assert!(matches!(f.vis, syn::Visibility::Public(_)));
        assert!(s.contains("pubfnstart()->std::io::Result<()>{"), "{s}");
        assert!(
            s.contains("::xev::rt::Builder::new().backend(::xev::Backend::IoUring).build()"),
            "{s}"
        );
    }

    #[test]
    fn main_epoll() {
        let (_, s) = expand_ok(
            Kind::Main,
            quote!(backend = "epoll"),
            quote! { async fn main() {} },
        );
        assert!(s.contains(".backend(::xev::Backend::Epoll)"), "{s}");
    }

    #[test]
    fn main_rejects_all() {
        let s = expand_err(
            Kind::Main,
            quote!(backend = "all"),
            quote! { async fn main() {} },
        );
        assert!(
            s.contains(r#"backend = \"all\" is only meaningful for #[xev::test]"#),
            "{s}"
        );
    }

    #[test]
    fn test_default_backend() {
        let (f, s) = expand_ok(
            Kind::Test,
            quote!(),
            quote! {
                async fn works() {
                    assert_eq!(1 + 1, 2);
                }
            },
        );
        assert_eq!(f.sig.ident, "works");
        assert!(matches!(f.sig.output, ReturnType::Default));
        assert!(
            s.starts_with("#[::core::prelude::v1::test]fnworks(){"),
            "{s}"
        );
        assert!(
            s.contains(
                "fn__xev_typed<F:::core::future::Future<Output=()>>(__xev_future:F)->F{__xev_future}let__xev_body=||__xev_typed(asyncmove{assert_eq!(1+1,2);});"
            ),
            "{s}"
        );
        assert!(
            s.contains("::xev::rt::Builder::new().build().expect(\"xev::test: failed to build the runtime\").block_on(__xev_body())"),
            "{s}"
        );
        assert!(!s.contains("Backend"), "{s}");
    }

    #[test]
    fn test_keeps_other_attributes_after_test() {
        let (f, s) = expand_ok(
            Kind::Test,
            quote!(backend = "all"),
            quote! {
                #[ignore]
                #[should_panic(expected = "boom")]
                async fn boom() {
                    panic!("boom");
                }
            },
        );
        let attrs: Vec<String> = f
            .attrs
            .iter()
            .map(|a| compact(a.to_token_stream()))
            .collect();
        assert_eq!(
            attrs,
            [
                "#[::core::prelude::v1::test]",
                "#[ignore]",
                "#[should_panic(expected=\"boom\")]"
            ]
        );
        assert!(s.contains("#[::core::prelude::v1::test]"), "{s}");
    }

    #[test]
    fn test_one_backend_skips_when_unavailable() {
        let (_, s) = expand_ok(
            Kind::Test,
            quote!(backend = "io_uring"),
            quote! { async fn ring() {} },
        );
        assert!(
            s.contains("if!::xev::Backend::IoUring.is_available(){"),
            "{s}"
        );
        assert!(s.contains("skipped"), "{s}");
        assert!(s.contains("return;"), "{s}");
        assert!(
            s.contains("::xev::rt::Builder::new().backend(::xev::Backend::IoUring).build()"),
            "{s}"
        );
        assert!(!s.contains("Backend::available()"), "{s}");

        let (_, s) = expand_ok(
            Kind::Test,
            quote!(backend = "epoll"),
            quote! { async fn e() {} },
        );
        assert!(
            s.contains("if!::xev::Backend::Epoll.is_available(){"),
            "{s}"
        );
    }

    #[test]
    fn test_all_backends() {
        let (_, s) = expand_ok(
            Kind::Test,
            quote!(backend = "all"),
            quote! { async fn each() {} },
        );
        assert!(
            s.contains("for__xev_backendin::xev::Backend::available(){"),
            "{s}"
        );
        assert!(
            s.contains("::std::eprintln!(\"xev::test: {} on {:?}\",\"each\",__xev_backend);"),
            "{s}"
        );
        assert!(s.contains("::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(||::xev::rt::Builder::new().backend(__xev_backend).build()"), "{s}");
        assert!(s.contains(".block_on(__xev_body())"), "{s}");
        assert!(s.contains("downcast_ref::<&'staticstr>()"), "{s}");
        assert!(s.contains("downcast_ref::<::std::string::String>()"), "{s}");
        assert!(s.contains("\"non-string panic payload\""), "{s}");
        assert!(
            s.contains("\"xev::test `{}` failed on backend {:?}: {}\",\"each\",__xev_backend,__xev_message"),
            "{s}"
        );
        assert!(!s.contains("resume_unwind"), "{s}");
        // The body is created per run, not once.
        assert!(s.contains("let__xev_body=||__xev_typed(asyncmove{"), "{s}");
    }

    #[test]
    fn test_result_return_panics_on_err() {
        let (f, s) = expand_ok(
            Kind::Test,
            quote!(backend = "all"),
            quote! {
                async fn fallible() -> Result<(), std::io::Error> {
                    std::fs::metadata("/")?;
                    Ok(())
                }
            },
        );
        // The generated test itself returns `()`, so `#[should_panic]` works with it.
        assert!(matches!(f.sig.output, ReturnType::Default));
        assert!(
            s.contains("Future<Output=Result<(),std::io::Error>>"),
            "{s}"
        );
        assert!(
            s.contains("iflet::core::result::Result::Err(__xev_error)=__xev_result{::std::panic!(\"xev::test `{}` failed on backend {:?}: {:?}\",\"fallible\",__xev_backend,__xev_error)}"),
            "{s}"
        );

        let (_, s) = expand_ok(
            Kind::Test,
            quote!(),
            quote! { async fn fallible() -> Result<(), String> { Ok(()) } },
        );
        assert!(
            s.contains("\"xev::test `{}` failed: {:?}\",\"fallible\",__xev_error"),
            "{s}"
        );

        let (_, s) = expand_ok(
            Kind::Test,
            quote!(backend = "epoll"),
            quote! { async fn fallible() -> Result<(), String> { Ok(()) } },
        );
        assert!(
            s.contains("\"xev::test `{}` failed on backend {:?}: {:?}\",\"fallible\",::xev::Backend::Epoll,__xev_error"),
            "{s}"
        );
    }

    #[test]
    fn misuse_is_a_compile_error_and_keeps_the_item() {
        let s = expand_err(Kind::Test, quote!(), quote! { fn sync_test() {} });
        assert!(
            s.contains("the `async` keyword is missing from the function declaration"),
            "{s}"
        );
        assert!(s.contains("fn sync_test"), "{s}");

        let s = expand_err(
            Kind::Main,
            quote!(),
            quote! { async fn main(args: Vec<String>) {} },
        );
        assert!(
            s.contains("#[xev::main] functions cannot take arguments"),
            "{s}"
        );

        let s = expand_err(Kind::Test, quote!(), quote! { async fn t(x: u8) {} });
        assert!(
            s.contains("#[xev::test] functions cannot take arguments"),
            "{s}"
        );

        let s = expand_err(Kind::Test, quote!(), quote! { async fn t<T: Default>() {} });
        assert!(
            s.contains("#[xev::test] functions cannot be generic"),
            "{s}"
        );

        let s = expand_err(
            Kind::Test,
            quote!(backend = "uring"),
            quote! { async fn t() {} },
        );
        assert!(s.contains("unknown backend"), "{s}");
        assert!(s.contains(r#"\"io_uring\", \"epoll\""#), "{s}");

        let s = expand_err(
            Kind::Test,
            quote!(backend = epoll),
            quote! { async fn t() {} },
        );
        assert!(s.contains("must be a string literal"), "{s}");

        let s = expand_err(
            Kind::Main,
            quote!(workers = 4),
            quote! { async fn main() {} },
        );
        assert!(s.contains("unknown option `workers`"), "{s}");

        // Attribute and function problems are reported together.
        let s = expand_err(Kind::Test, quote!(bogus), quote! { fn t() {} });
        assert!(s.contains("unknown option `bogus`"), "{s}");
        assert!(s.contains("`async` keyword is missing"), "{s}");
    }
}
