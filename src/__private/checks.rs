//! The compile-time checks of `#[derive(LoopJob)]`: each turns a mistake into an error that
//! says what to write, instead of one about the generated code.
//!
//! They use autoref specialisation: the derive calls a method on `&&&Probe<T>` (or
//! `RunProbe<F>`), several traits in scope offer that method at different levels of reference,
//! and the first level whose impl applies wins. The impls for the right code do the work; the
//! fallbacks carry a bound on a trait that nothing implements, whose
//! `#[diagnostic::on_unimplemented]` message is the error the user reads.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use validator::Validate;

use crate::job::JobError;
use crate::settings::{OptionKeys, OptionsSpec, Section, SettingsProblem, Typed};

/// A type the derive asks about, as a value.
pub struct Probe<T>(PhantomData<fn() -> T>);

impl<T> Probe<T> {
    /// The probe for `T`.
    pub const fn new() -> Self {
        Probe(PhantomData)
    }
}

impl<T> Default for Probe<T> {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------------
// The options type: `Deserialize` and `Validate`.

/// How a discovered job's options are read: the two functions of an [`OptionsSpec`], picked by
/// the derive.
pub struct OptionsReader<O> {
    pub(crate) keys: fn() -> OptionKeys,
    pub(crate) read: fn(&Section<'_>) -> Result<O, Vec<SettingsProblem>>,
}

impl<O> OptionsReader<O> {
    /// The reader of `S`.
    pub fn of<S: OptionsSpec<Output = O>>() -> Self {
        OptionsReader {
            keys: S::keys,
            read: S::read,
        }
    }
}

/// Options that can be read: the derive's `&&&Probe<O>` finds this first.
pub trait ReadableOptions<O> {
    /// Reads `O` with serde and checks it with `validator`.
    fn options_reader(&self) -> OptionsReader<O>;
}

impl<O> ReadableOptions<O> for &&Probe<O>
where
    O: DeserializeOwned + Validate + Send + Sync + 'static,
{
    fn options_reader(&self) -> OptionsReader<O> {
        OptionsReader::of::<Typed<O>>()
    }
}

/// Options that deserialize but are not `Validate`.
pub trait OptionsWithoutValidate<O> {
    /// Never compiles: names the missing derive.
    fn options_reader(&self) -> OptionsReader<O>
    where
        O: OptionsNeedValidate;
}

impl<O: DeserializeOwned> OptionsWithoutValidate<O> for &Probe<O> {
    fn options_reader(&self) -> OptionsReader<O>
    where
        O: OptionsNeedValidate,
    {
        O::unreachable()
    }
}

/// Options that do not even deserialize.
pub trait OptionsWithoutDeserialize<O> {
    /// Never compiles: names the missing derive.
    fn options_reader(&self) -> OptionsReader<O>
    where
        O: OptionsNeedDeserialize;
}

impl<O> OptionsWithoutDeserialize<O> for Probe<O> {
    fn options_reader(&self) -> OptionsReader<O>
    where
        O: OptionsNeedDeserialize,
    {
        O::unreachable()
    }
}

/// Implemented by no type: its message is the error for options without `Validate`.
#[diagnostic::on_unimplemented(
    message = "the job's options type `{Self}` must implement `validator::Validate`",
    label = "the options type named here",
    note = "add `#[derive(validator::Validate)]` to `{Self}` (without any `#[validate(...)]` rule it accepts every value)"
)]
pub trait OptionsNeedValidate {
    /// Never called.
    fn unreachable<R>() -> R;
}

/// Implemented by no type: its message is the error for options without `Deserialize`.
#[diagnostic::on_unimplemented(
    message = "the job's options type `{Self}` must implement `serde::Deserialize` and `validator::Validate`",
    label = "the options type named here",
    note = "add `#[derive(serde::Deserialize, validator::Validate)]` to `{Self}`"
)]
pub trait OptionsNeedDeserialize {
    /// Never called.
    fn unreachable<R>() -> R;
}

// ---------------------------------------------------------------------------------------------
// Fields: `Default` (or `Arc<T>`, taken from the resources, which the derive handles itself).

/// A field whose type is `Default`: the derive's `&&Probe<T>` finds this first.
pub trait DefaultField<T> {
    /// `T::default()`.
    fn field_value(&self) -> T;
}

impl<T: Default> DefaultField<T> for &Probe<T> {
    fn field_value(&self) -> T {
        T::default()
    }
}

/// A field that is neither `Default` nor an `Arc`.
pub trait FieldWithoutDefault<T> {
    /// Never compiles: says how to give the field a value.
    fn field_value(&self) -> T
    where
        T: FieldNeedsDefaultOrArc;
}

impl<T> FieldWithoutDefault<T> for Probe<T> {
    fn field_value(&self) -> T
    where
        T: FieldNeedsDefaultOrArc,
    {
        T::unreachable()
    }
}

/// Implemented by no type: its message is the error for a field the derive cannot fill.
#[diagnostic::on_unimplemented(
    message = "a discovered job's field of type `{Self}` needs a value: it is neither `Default` nor an `Arc<T>`",
    label = "this field",
    note = "to share a value registered with `HostBuilder::resource(value)`, make the field `Arc<{Self}>`; otherwise implement `Default` for `{Self}`"
)]
pub trait FieldNeedsDefaultOrArc {
    /// Never called.
    fn unreachable<R>() -> R;
}

// ---------------------------------------------------------------------------------------------
// `execute`: the struct's own `async fn`, not the trait method the derive writes.

pin_project_lite::pin_project! {
    /// The future the derived `LoopJob::execute` returns: the struct's own `execute`'s future.
    ///
    /// A type of its own, so that a struct without an `execute` of its own, whose
    /// `Self::execute` then names the derived method itself, is caught by [`RunProbe`].
    pub struct DerivedRun<F> {
        #[pin]
        run: F,
    }
}

impl<F> DerivedRun<F> {
    /// Wraps the struct's own run future.
    pub fn new(run: F) -> Self {
        DerivedRun { run }
    }
}

impl<F: Future<Output = Result<(), JobError>>> Future for DerivedRun<F> {
    type Output = Result<(), JobError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().run.poll(cx)
    }
}

/// The future `Self::execute(self, ctx)` gave, for the derive to check where it came from.
pub struct RunProbe<F>(Option<F>);

impl<F> RunProbe<F> {
    /// The probe of a run future.
    pub fn new(run: F) -> Self {
        RunProbe(Some(run))
    }
}

/// `Self::execute` named the derived method itself: the struct has no `execute` of its own.
pub trait RecursiveRun {
    /// Never compiles: says what to write.
    fn own_run<J>(self) -> std::future::Pending<Result<(), JobError>>
    where
        J: JobNeedsExecute;
}

impl<F> RecursiveRun for RunProbe<DerivedRun<F>> {
    fn own_run<J>(self) -> std::future::Pending<Result<(), JobError>>
    where
        J: JobNeedsExecute,
    {
        J::unreachable()
    }
}

/// `Self::execute` named the struct's own method: its future, as is.
pub trait OwnRun<F> {
    /// The run future.
    fn own_run<J>(&mut self) -> F;
}

impl<F> OwnRun<F> for RunProbe<F> {
    fn own_run<J>(&mut self) -> F {
        match self.0.take() {
            Some(run) => run,
            // The derive calls `own_run` once on a fresh probe.
            None => unreachable!("a run probe is used once"),
        }
    }
}

/// Implemented by no type: its message is the error for a derived job without `execute`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `execute` of its own, which `#[derive(LoopJob)]` calls",
    label = "the job's runs call `{Self}::execute`",
    note = "write `impl {Self} {{ async fn execute(&self, ctx: &JobContext) -> Result<(), JobError> {{ … }} }}`"
)]
pub trait JobNeedsExecute {
    /// Never called.
    fn unreachable<R>() -> R;
}
