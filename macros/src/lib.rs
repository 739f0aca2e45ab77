//! `#[derive(LoopJob)]` for [loopjob](https://docs.rs/loopjob): write the struct and its
//! `async fn execute`, and the attribute gives the rest. See the `loopjob` crate's `LoopJob`
//! derive documentation for the attribute keys.

use std::time::Duration;

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Error, Fields, Lit, LitStr, Type, parse_macro_input};

/// Implements `loopjob::LoopJob` for a struct that has an inherent
/// `async fn execute(&self, ctx: &JobContext) -> Result<(), JobError>`.
///
/// ```text
/// #[derive(LoopJob)]
/// #[loopjob(options = PcKeepAliveOptions, interval = "10s", initial_delay = "10m", discover)]
/// struct PcKeepAlive {
///     pcs: Arc<PcRepository>,          // from HostBuilder::resource, by type
///     options: PcKeepAliveOptions,     // from [jobs.pc_keep_alive], validated
///     checked: AtomicU64,              // Default
/// }
///
/// impl PcKeepAlive {
///     async fn execute(&self, ctx: &JobContext) -> Result<(), JobError> { … }
/// }
/// ```
///
/// Keys of `#[loopjob(...)]` (all optional):
///
/// | key | meaning |
/// |---|---|
/// | `name = "…"` | the job's name; default: the type's name in snake_case |
/// | `options = Type` | the options type (`Deserialize + Validate`); default `()` |
/// | schedule keys | `interval`, `initial_delay`, `jitter`, `timeout`, `cancel_grace`, `retry_backoff` (durations as `"10s"`, checked at compile time), `mode = "fixed_rate"/"fixed_delay"`, `missed_ticks = "skip"/"delay"`, `catch_up = "once"/"skip"`, `skip_if_running`, `align`, `enabled` (booleans), `max_overlap`, `retries` (numbers) |
/// | cron keys | `cron = "0 */5 * * * *"` instead of `interval` (loopjob's `cron` feature), `timezone = "Europe/Berlin"` (default UTC); checked when the host builds |
/// | `discover` | register the type so that `HostBuilder::discover()` builds and adds it |
/// | `section = "…"` | the settings section `[jobs.<section>]`; default: the name |
/// | leadership keys | `leader = "none"/"cluster"/"global"/"partitioned"` (names in any case, as in settings), `lease_ttl`, `renew_every`, `retry_every`, `priority`, `partitions`, `history` (runs kept per lease key) |
///
/// These are defaults: settings override them, and the environment overrides settings. Without
/// `interval` the job has none, and its settings section must give one.
///
/// With `discover`, the job is built at `HostBuilder::build()`: the field marked
/// `#[loopjob(options)]` (or whose type is the options type) gets the options read from the
/// section; each `Arc<T>` field gets the resource of type `T` registered on the builder (a
/// missing one is a build error naming the field); every other field is `Default::default()`.
/// A discovered job cannot be generic.
///
/// Mistakes get an error that says what to write, at the tokens at fault: a struct without its
/// own `execute`, an options type that is not `Deserialize` and `Validate`, a field that is
/// neither `Default` nor an `Arc<T>` resource, an unknown or malformed key (the crate's
/// `tests/ui` holds one case of each).
#[proc_macro_derive(LoopJob, attributes(loopjob))]
pub fn derive_loop_job(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// The schedule keys of the attribute, in `Schedule`'s order, and how each is written.
const SCHEDULE_KEYS: [(&str, Kind); 16] = [
    ("interval", Kind::Duration),
    ("cron", Kind::Text),
    ("timezone", Kind::Text),
    ("initial_delay", Kind::Duration),
    ("mode", Kind::Choice(&["fixed_rate", "fixed_delay"])),
    ("skip_if_running", Kind::Bool),
    ("max_overlap", Kind::Count),
    ("missed_ticks", Kind::Choice(&["skip", "delay"])),
    ("catch_up", Kind::Choice(&["once", "skip"])),
    ("jitter", Kind::Duration),
    ("align", Kind::Bool),
    ("timeout", Kind::Duration),
    ("cancel_grace", Kind::Duration),
    ("retries", Kind::Count),
    ("retry_backoff", Kind::Duration),
    ("enabled", Kind::Bool),
];

/// The leadership keys: they give the derived `LoopJob::leadership`.
const LEADERSHIP_KEYS: [(&str, Kind); 7] = [
    (
        "leader",
        Kind::Choice(&["none", "cluster", "global", "partitioned"]),
    ),
    ("lease_ttl", Kind::Duration),
    ("renew_every", Kind::Duration),
    ("retry_every", Kind::Duration),
    ("priority", Kind::Count),
    ("partitions", Kind::Count),
    ("history", Kind::Count),
];

/// The other keys.
const OTHER_KEYS: [&str; 4] = ["name", "section", "options", "discover"];

#[derive(Clone, Copy)]
enum Kind {
    Duration,
    Bool,
    Count,
    /// A string taken as it is (a cron expression, a time zone), checked when the host builds.
    Text,
    Choice(&'static [&'static str]),
}

/// One schedule or leadership value, checked.
enum Setting {
    Duration(Duration),
    Bool(bool),
    Count(u32),
    Text(String),
    Choice(String),
}

#[derive(Default)]
struct Attributes {
    name: Option<LitStr>,
    section: Option<LitStr>,
    options: Option<Type>,
    discover: Option<Span>,
    schedule: Vec<(&'static str, Setting, Span)>,
    leadership: Vec<(&'static str, Setting, Span)>,
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let fields = match &input.data {
        Data::Struct(data) => &data.fields,
        Data::Enum(data) => return Err(not_a_struct(data.enum_token.span)),
        Data::Union(data) => return Err(not_a_struct(data.union_token.span)),
    };
    let attrs = parse_attributes(input)?;
    check_cadence(&attrs)?;
    let ident = &input.ident;
    let name = match &attrs.name {
        Some(name) => {
            let value = name.value();
            if value.trim().is_empty() || value.contains('.') {
                return Err(Error::new(
                    name.span(),
                    "a job name must be non-empty and have no `.`",
                ));
            }
            value
        }
        None => snake_case(&ident.to_string()),
    };
    if let Some(section) = &attrs.section {
        let value = section.value();
        if value.trim().is_empty() || value.contains('.') {
            return Err(Error::new(
                section.span(),
                "a section name must be non-empty and have no `.`: it names [jobs.<section>]",
            ));
        }
    }

    let options_ty = attrs
        .options
        .as_ref()
        .map_or_else(|| quote!(()), ToTokens::to_token_stream);
    let schedule = schedule_tokens(&attrs);
    let leadership = leadership_tokens(&attrs);
    let section_fn = attrs.section.as_ref().map(|section| {
        quote! {
            fn section(&self) -> &str {
                #section
            }
        }
    });
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    // The inherent `async fn execute` the struct's author wrote. Without one, `Self::execute`
    // names this very method, whose future is a `DerivedRun`: the probe then picks the impl
    // whose bound fails with a message saying what to write (see `__private::checks`).
    let execute = quote_spanned! {ident.span()=>
        #[allow(refining_impl_trait)]
        fn execute(
            &self,
            ctx: &::loopjob::JobContext,
        ) -> ::loopjob::__private::DerivedRun<
            impl ::core::future::Future<Output = ::core::result::Result<(), ::loopjob::JobError>>
                + ::core::marker::Send,
        > {
            #[allow(unused_imports)]
            use ::loopjob::__private::{OwnRun as _, RecursiveRun as _};
            ::loopjob::__private::DerivedRun::new(
                ::loopjob::__private::RunProbe::new(Self::execute(self, ctx)).own_run::<Self>(),
            )
        }
    };
    let loop_job = quote! {
        #[automatically_derived]
        impl #impl_generics ::loopjob::LoopJob for #ident #ty_generics #where_clause {
            fn name(&self) -> &str {
                #name
            }

            fn schedule(&self) -> ::loopjob::Schedule {
                #schedule
            }

            fn leadership(&self) -> ::loopjob::Leadership {
                #leadership
            }

            #section_fn

            #execute
        }
    };
    let Some(discover_span) = attrs.discover else {
        check_options_fields(fields, &attrs)?;
        return Ok(loop_job);
    };
    if !input.generics.params.is_empty() {
        return Err(Error::new(
            input.generics.span(),
            "a discovered job cannot be generic: discovery builds one concrete type",
        ));
    }
    let section = attrs
        .section
        .as_ref()
        .map_or_else(|| name.clone(), LitStr::value);
    // Options that are not `Deserialize + Validate` get an error at the options type that
    // names the missing derive (see `__private::checks`).
    let options_reader = match &attrs.options {
        Some(options) => quote_spanned! {options.span()=>
            #[allow(unused_imports)]
            use ::loopjob::__private::{
                OptionsWithoutDeserialize as _, OptionsWithoutValidate as _, ReadableOptions as _,
            };
            (&&&::loopjob::__private::Probe::<#options>::new()).options_reader()
        },
        None => quote! {
            ::loopjob::__private::OptionsReader::of::<::loopjob::__private::NoOptions>()
        },
    };
    let build = build_tokens(fields, &attrs)?;
    Ok(quote_spanned! {discover_span=>
        #loop_job

        #[automatically_derived]
        impl ::loopjob::__private::Discover for #ident {
            type Options = #options_ty;

            fn options_reader() -> ::loopjob::__private::OptionsReader<Self::Options> {
                #options_reader
            }
            const NAME: &'static str = #name;
            const SECTION: &'static str = #section;

            fn default_schedule() -> ::loopjob::Schedule {
                #schedule
            }

            fn default_leadership() -> ::loopjob::Leadership {
                #leadership
            }

            #build
        }

        ::loopjob::__private::inventory::submit! {
            ::loopjob::__private::Discovered::of::<#ident>()
        }
    })
}

fn not_a_struct(span: Span) -> Error {
    Error::new(
        span,
        "#[derive(LoopJob)] works on a struct: its fields hold what the job needs",
    )
}

fn parse_attributes(input: &DeriveInput) -> syn::Result<Attributes> {
    let mut attrs = Attributes::default();
    let mut seen: Vec<String> = Vec::new();
    for attr in input
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("loopjob"))
    {
        attr.parse_nested_meta(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            let span = meta.path.span();
            if seen.contains(&key) {
                return Err(Error::new(span, format!("`{key}` is given twice")));
            }
            seen.push(key.clone());
            match key.as_str() {
                "name" => attrs.name = Some(meta.value()?.parse()?),
                "section" => attrs.section = Some(meta.value()?.parse()?),
                "options" => attrs.options = Some(meta.value()?.parse()?),
                "discover" => attrs.discover = Some(span),
                _ => {
                    let (list, key, kind) = if let Some((key, kind)) = find(&SCHEDULE_KEYS, &key) {
                        (&mut attrs.schedule, key, kind)
                    } else if let Some((key, kind)) = find(&LEADERSHIP_KEYS, &key) {
                        (&mut attrs.leadership, key, kind)
                    } else {
                        return Err(unknown_key(&key, span));
                    };
                    let lit: Lit = meta.value()?.parse()?;
                    list.push((key, setting(key, kind, &lit)?, lit.span()));
                }
            }
            Ok(())
        })?;
    }
    Ok(attrs)
}

fn find(keys: &[(&'static str, Kind)], key: &str) -> Option<(&'static str, Kind)> {
    keys.iter().find(|(known, _)| *known == key).copied()
}

fn unknown_key(key: &str, span: Span) -> Error {
    let known = OTHER_KEYS
        .iter()
        .copied()
        .chain(SCHEDULE_KEYS.iter().map(|(key, _)| *key))
        .chain(LEADERSHIP_KEYS.iter().map(|(key, _)| *key));
    let suggestion = known
        .map(|candidate| (strsim::damerau_levenshtein(key, candidate), candidate))
        .filter(|&(distance, candidate)| distance <= 2.max(candidate.len() / 3))
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| format!("; did you mean `{candidate}`?"))
        .unwrap_or_else(|| {
            "; the keys are name, section, options, discover, the schedule keys (interval, \
             initial_delay, …) and the leadership keys (leader, lease_ttl, …)"
                .to_owned()
        });
    Error::new(
        span,
        format!("unknown key `{key}` in #[loopjob(...)]{suggestion}"),
    )
}

fn setting(key: &str, kind: Kind, lit: &Lit) -> syn::Result<Setting> {
    match (kind, lit) {
        (Kind::Duration, Lit::Str(text)) => humantime::parse_duration(text.value().trim())
            .map(Setting::Duration)
            .map_err(|error| {
                Error::new(
                    text.span(),
                    format!(
                        "`{key}` is not a duration ({error}): write it like \"10s\", \"1m 30s\" \
                         or \"250ms\""
                    ),
                )
            }),
        (Kind::Duration, Lit::Int(number)) => Err(Error::new(
            number.span(),
            format!(
                "`{key}` needs a unit: write \"{}s\" for seconds",
                number.base10_digits()
            ),
        )),
        (Kind::Bool, Lit::Bool(value)) => Ok(Setting::Bool(value.value)),
        (Kind::Count, Lit::Int(number)) => number.base10_parse().map(Setting::Count),
        (Kind::Text, Lit::Str(text)) => Ok(Setting::Text(text.value())),
        // Names are read in any case, as settings read them: "Global" is "global".
        (Kind::Choice(choices), Lit::Str(text)) => {
            let wanted = text.value().trim().to_ascii_lowercase();
            if choices.contains(&wanted.as_str()) {
                return Ok(Setting::Choice(wanted));
            }
            let hint = choices
                .iter()
                .filter(|_| wanted.len() <= 64) // a long value gets no search
                .map(|choice| (strsim::damerau_levenshtein(&wanted, choice), choice))
                .filter(|&(distance, choice)| distance <= 2.max(choice.len() / 3))
                .min_by_key(|&(distance, _)| distance)
                .map(|(_, choice)| format!("; did you mean \"{choice}\"?"))
                .unwrap_or_default();
            Err(Error::new(
                text.span(),
                format!(
                    "`{key}` expects one of \"{}\"{hint}",
                    choices.join("\", \"")
                ),
            ))
        }
        (kind, lit) => {
            let expected = match kind {
                Kind::Duration => "a duration in a string, such as \"10s\"".to_owned(),
                Kind::Bool => "true or false".to_owned(),
                Kind::Count => "a whole number".to_owned(),
                Kind::Text => "a string".to_owned(),
                Kind::Choice(choices) => format!("one of \"{}\"", choices.join("\", \"")),
            };
            Err(Error::new(
                lit.span(),
                format!("`{key}` expects {expected}"),
            ))
        }
    }
}

fn duration_tokens(duration: Duration) -> Tokens {
    let (secs, nanos) = (duration.as_secs(), duration.subsec_nanos());
    quote!(::core::time::Duration::new(#secs, #nanos))
}

fn value_tokens(key: &str, setting: &Setting) -> Tokens {
    match setting {
        Setting::Duration(duration) => duration_tokens(*duration),
        Setting::Bool(value) => quote!(#value),
        Setting::Count(value) => quote!(#value),
        Setting::Text(text) => quote!(#text),
        Setting::Choice(choice) => match (key, choice.as_str()) {
            ("mode", "fixed_delay") => quote!(::loopjob::ScheduleMode::FixedDelay),
            ("mode", _) => quote!(::loopjob::ScheduleMode::FixedRate),
            ("missed_ticks", "delay") => quote!(::loopjob::MissedTicks::Delay),
            ("missed_ticks", _) => quote!(::loopjob::MissedTicks::Skip),
            ("catch_up", "skip") => quote!(::loopjob::CatchUp::Skip),
            ("catch_up", _) => quote!(::loopjob::CatchUp::Once),
            (_, "cluster") => quote!(::loopjob::LeaderMode::Cluster),
            (_, "global") => quote!(::loopjob::LeaderMode::Global),
            (_, "partitioned") => quote!(::loopjob::LeaderMode::Partitioned),
            (_, _) => quote!(::loopjob::LeaderMode::None),
        },
    }
}

/// `Schedule::every(interval)` (or `Schedule::cron(expression)`) and a setter for each other
/// key; a job whose attribute gives neither has a zero interval, which settings must replace
/// (the host says so otherwise).
fn schedule_tokens(attrs: &Attributes) -> Tokens {
    let mut cadence = {
        let zero = duration_tokens(Duration::ZERO);
        quote!(::loopjob::Schedule::every(#zero))
    };
    let mut setters = Vec::new();
    for (key, setting, _) in &attrs.schedule {
        let value = value_tokens(key, setting);
        match *key {
            "interval" => cadence = quote!(::loopjob::Schedule::every(#value)),
            "cron" => cadence = quote!(::loopjob::Schedule::cron(#value)),
            _ => {
                let setter = syn::Ident::new(key, Span::call_site());
                setters.push(quote!(.#setter(#value)));
            }
        }
    }
    quote!(#cadence #(#setters)*)
}

/// `cron` and `interval` exclude each other, and `timezone` needs `cron`.
fn check_cadence(attrs: &Attributes) -> syn::Result<()> {
    let span_of = |wanted: &str| {
        attrs
            .schedule
            .iter()
            .find(|(key, _, _)| *key == wanted)
            .map(|(_, _, span)| *span)
    };
    match (span_of("interval"), span_of("cron"), span_of("timezone")) {
        (Some(_), Some(cron), _) => Err(Error::new(
            cron,
            "`cron` and `interval` are exclusive: a job runs every interval or at the times of a \
             cron expression; keep one of the two keys",
        )),
        (_, None, Some(timezone)) => Err(Error::new(
            timezone,
            "`timezone` applies to a cron schedule: give `cron = \"…\"` too, or remove it",
        )),
        _ => Ok(()),
    }
}

fn leadership_tokens(attrs: &Attributes) -> Tokens {
    let mut mode = quote!(::loopjob::LeaderMode::None);
    let mut setters = Vec::new();
    for (key, setting, _) in &attrs.leadership {
        let value = value_tokens(key, setting);
        match *key {
            "leader" => mode = value,
            "renew_every" => setters.push(quote!(.with_renew_every(#value))),
            _ => {
                let setter = syn::Ident::new(key, Span::call_site());
                setters.push(quote!(.#setter(#value)));
            }
        }
    }
    quote!(::loopjob::Leadership::new(#mode) #(#setters)*)
}

/// Whether a field takes the options: marked `#[loopjob(options)]`, or of the options type.
fn is_options_field(field: &syn::Field, attrs: &Attributes) -> syn::Result<bool> {
    let mut marked = None;
    for attr in field
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("loopjob"))
    {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("options") {
                marked = Some(meta.path.span());
                Ok(())
            } else {
                Err(meta.error("the only field key is `options`: #[loopjob(options)]"))
            }
        })?;
    }
    if let (Some(span), None) = (marked, &attrs.options) {
        return Err(Error::new(
            span,
            "this field takes the job's options, but #[loopjob(...)] names no options type: add \
             `options = YourOptions` to the struct's attribute",
        ));
    }
    let same_type = attrs.options.as_ref().is_some_and(|options| {
        options.to_token_stream().to_string() == field.ty.to_token_stream().to_string()
    });
    Ok(marked.is_some() || same_type)
}

fn check_options_fields(fields: &Fields, attrs: &Attributes) -> syn::Result<()> {
    fields
        .iter()
        .try_for_each(|field| is_options_field(field, attrs).map(drop))
}

/// The type `T` of a field written `Arc<T>`.
fn arc_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Arc" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(inner) if args.args.len() == 1 => Some(inner),
        _ => None,
    }
}

/// `Discover::build`: the options field gets the options, `Arc<T>` fields come from the
/// resources, the others from `Default`.
fn build_tokens(fields: &Fields, attrs: &Attributes) -> syn::Result<Tokens> {
    let mut takes = Vec::new();
    let mut bindings = Vec::new();
    let mut inits = Vec::new();
    let mut options_field: Option<Span> = None;
    for (index, field) in fields.iter().enumerate() {
        let member = match &field.ident {
            Some(ident) => quote!(#ident),
            None => {
                let index = syn::Index::from(index);
                quote!(#index)
            }
        };
        let label = field
            .ident
            .as_ref()
            .map_or_else(|| index.to_string(), ToString::to_string);
        let ty = &field.ty;
        if is_options_field(field, attrs)? {
            if options_field.replace(field.span()).is_some() {
                return Err(Error::new(
                    field.span(),
                    "only one field can take the job's options",
                ));
            }
            inits.push(quote!(#member: options));
        } else if let Some(inner) = arc_inner(ty) {
            let binding = syn::Ident::new(&format!("__resource_{index}"), Span::call_site());
            takes.push(quote_spanned! {ty.span()=>
                let #binding = missing.take::<#inner>(resources, #label);
            });
            bindings.push(binding.clone());
            inits.push(quote!(#member: #binding));
        } else {
            // A type that is not `Default` gets an error at the field saying to make it an
            // `Arc` resource or `Default` (see `__private::checks`).
            inits.push(quote_spanned! {ty.span()=>
                #member: {
                    #[allow(unused_imports)]
                    use ::loopjob::__private::{DefaultField as _, FieldWithoutDefault as _};
                    (&&::loopjob::__private::Probe::<#ty>::new()).field_value()
                }
            });
        }
    }
    let construct = match fields {
        Fields::Unit => quote!(Self),
        _ => quote!(Self { #(#inits),* }),
    };
    let unpack = if bindings.is_empty() {
        quote!()
    } else {
        quote! {
            let (#(::core::option::Option::Some(#bindings),)*) = (#(#bindings,)*) else {
                return ::core::result::Result::Err(missing);
            };
        }
    };
    Ok(quote! {
        #[allow(unused_variables, unused_mut)]
        fn build(
            options: <Self as ::loopjob::__private::Discover>::Options,
            resources: &::loopjob::Resources,
        ) -> ::core::result::Result<Self, ::loopjob::__private::MissingResources> {
            let mut missing = ::loopjob::__private::MissingResources::default();
            #(#takes)*
            #unpack
            ::core::result::Result::Ok(#construct)
        }
    })
}

/// `PcKeepAlive` → `pc_keep_alive`, `HTTPPoller` → `http_poller`.
fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let after_lower =
                i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let ends_acronym = i > 0
                && chars[i - 1].is_uppercase()
                && chars.get(i + 1).is_some_and(|next| next.is_lowercase());
            if after_lower || ends_acronym {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{expand, snake_case};

    fn error_of(source: &str) -> String {
        let input: syn::DeriveInput = syn::parse_str(source).expect("a struct");
        match expand(&input) {
            Ok(_) => panic!("expected an error for {source}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn cron_and_interval_exclude_each_other_and_timezone_needs_cron() {
        let both = error_of(r#"#[loopjob(interval = "1m", cron = "* * * * *")] struct Job;"#);
        assert!(
            both.contains("`cron` and `interval` are exclusive"),
            "{both}"
        );
        let zone = error_of(r#"#[loopjob(interval = "1m", timezone = "UTC")] struct Job;"#);
        assert!(
            zone.contains("`timezone` applies to a cron schedule"),
            "{zone}"
        );
        let text = error_of(r#"#[loopjob(cron = 5)] struct Job;"#);
        assert!(text.contains("`cron` expects a string"), "{text}");
    }

    #[test]
    fn names_are_snake_case() {
        assert_eq!(snake_case("PcKeepAlive"), "pc_keep_alive");
        assert_eq!(snake_case("HTTPPoller"), "http_poller");
        assert_eq!(snake_case("Cleanup2Job"), "cleanup2_job");
        assert_eq!(snake_case("job"), "job");
    }
}
