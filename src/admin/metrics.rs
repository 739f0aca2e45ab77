//! `/metrics`: loopjob's counters and histograms (see the crate's `metrics` feature) in the
//! Prometheus text format, rendered by `metrics-exporter-prometheus`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Where `/metrics` reads from: a recorder's handle, or why there is none.
#[derive(Clone, Debug)]
pub(crate) enum MetricsSource {
    Prometheus(PrometheusHandle),
    /// Another global recorder was installed first: the text says what to do.
    Unavailable(String),
}

/// The process's one recorder, installed by the first admin endpoint that needs it.
static INSTALLED: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

impl MetricsSource {
    /// The handle given in the options, else the recorder this module installs as the
    /// process's global `metrics` recorder (once per process; later hosts share it).
    pub(crate) fn new(given: Option<PrometheusHandle>) -> Self {
        if let Some(handle) = given {
            return MetricsSource::Prometheus(handle);
        }
        let installed =
            INSTALLED.get_or_init(|| {
                PrometheusBuilder::new().install_recorder().map_err(|error| {
                let message = format!(
                    "/metrics is unavailable: another global `metrics` recorder was installed \
                     before loopjob's admin endpoint ({error}); serve metrics from that \
                     recorder, or, if it is a metrics-exporter-prometheus recorder, give its \
                     handle with AdminOptions::prometheus"
                );
                tracing::warn!("{message}");
                message
            })
            });
        match installed {
            Ok(handle) => MetricsSource::Prometheus(handle.clone()),
            Err(message) => MetricsSource::Unavailable(message.clone()),
        }
    }
}
