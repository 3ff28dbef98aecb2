//! Prometheus exposition formats as the Pushgateway speaks them: the text format 0.0.4 and
//! length-delimited protobuf `MetricFamily` streams. Parsing and encoding only; no I/O.
//!
//! The text parser reproduces the error messages of Go's `expfmt.TextParser` (prometheus/common)
//! word for word, because Pushgateway clients and operators see them in 400 answers.

pub mod delimited;
mod go;
pub mod proto;
pub mod text;

pub use proto::{LabelPair, Metric, MetricFamily, MetricType};
