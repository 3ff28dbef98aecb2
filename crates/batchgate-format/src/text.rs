//! Text exposition format 0.0.4.
//!
//! The parser is a byte-for-byte port of the state machine in prometheus/common v0.37
//! `expfmt/text_parse.go` (the version in Pushgateway 1.5.1), so that it accepts, rejects and
//! reports exactly what the reference does. The writer mirrors `expfmt/text_create.go`.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::go::{self, f64_to_u64, parse_float, quote, quote_byte};
use crate::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType, Quantile, Summary, Untyped,
};

/// A text-format error, displayed as Go's `expfmt` displays it:
/// `text format parsing error in line N: <msg>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("text format parsing error in line {line}: {msg}")]
pub struct ParseError {
    /// 1-based line number, counted as Go counts it.
    pub line: usize,
    /// Go's message, word for word.
    pub msg: String,
}

/// Parses a whole text-format body into families (one per name, samples of interleaved names
/// merged, families without samples dropped), in the order their names first appear.
///
/// Behaves like Go's `TextParser.TextToMetricFamilies` as used by Pushgateway 1.5.1:
/// every family gets a type (`UNTYPED` without a TYPE line), `help` is set only by a HELP line,
/// timestamps are kept in `timestamp_ms`, and summaries/histograms are assembled from their
/// `quantile`/`le`, `_bucket`, `_sum` and `_count` lines. One deviation: Go keeps invalid
/// UTF-8 in HELP text as raw bytes; here it is replaced by U+FFFD.
pub fn parse(input: &[u8]) -> Result<Vec<MetricFamily>, ParseError> {
    let mut p = Parser::new(input);
    let mut state = State::StartOfLine;
    loop {
        state = match p.step(state) {
            Ok(State::Done) => break,
            Ok(next) => next,
            Err(fail) => {
                let msg = match fail {
                    Fail::Eof => "unexpected end of input stream".to_owned(),
                    Fail::Msg(msg) => msg,
                };
                return Err(ParseError { line: p.line, msg });
            }
        };
    }
    Ok(p.families.into_iter().filter(|f| !f.metric.is_empty()).collect())
}

#[derive(Debug, Clone, Copy)]
enum State {
    StartOfLine,
    StartComment,
    MetricName,
    Labels,
    LabelName,
    LabelValue,
    Value,
    Timestamp,
    Help,
    Type,
    Done,
}

/// Why parsing stopped: Go's `io.EOF` (reported as "unexpected end of input stream") or a
/// `ParseError` message.
enum Fail {
    Eof,
    Msg(String),
}

type Step = Result<State, Fail>;

/// `return fail!(...)`: stop with a formatted Go error message.
macro_rules! fail {
    ($($arg:tt)*) => {
        Err(Fail::Msg(format!($($arg)*)))
    };
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    line: usize,
    /// Go's `currentByte`: the most recently read byte.
    byte: u8,
    token: Vec<u8>,
    families: Vec<MetricFamily>,
    by_name: HashMap<String, usize>,
    /// Index of Go's `currentMF`.
    mf: usize,
    /// The sample being read; it joins its family once its labels are known.
    metric: Metric,
    /// Where the current sample ended up in `families[mf].metric`.
    metric_at: usize,
    /// Names in `metric.label`, for the duplicate check.
    label_names: HashSet<String>,
    /// Name of the label whose value is being read, and whether it is a real label (not a
    /// summary's `quantile` or a histogram's `le`).
    label: String,
    label_is_real: bool,
    /// Summary/histogram lines with equal labels (minus `quantile`/`le`) share one metric.
    group_labels: BTreeMap<String, String>,
    groups: HashMap<(usize, BTreeMap<String, String>), usize>,
    /// The line's `quantile` (summary) or `le` (histogram) value; NaN when absent.
    bound: f64,
    /// The line's name ends in `_count`/`_sum` of a summary or histogram family.
    is_count: bool,
    is_sum: bool,
}

impl<'a> Parser<'a> {
    fn new(input: &'a [u8]) -> Self {
        Parser {
            input,
            pos: 0,
            line: 0,
            byte: 0,
            token: Vec::new(),
            families: Vec::new(),
            by_name: HashMap::new(),
            mf: 0,
            metric: Metric::default(),
            metric_at: 0,
            label_names: HashSet::new(),
            label: String::new(),
            label_is_real: false,
            group_labels: BTreeMap::new(),
            groups: HashMap::new(),
            bound: f64::NAN,
            is_count: false,
            is_sum: false,
        }
    }

    fn step(&mut self, state: State) -> Step {
        match state {
            State::StartOfLine => self.start_of_line(),
            State::StartComment => self.start_comment(),
            State::MetricName => self.reading_metric_name(),
            State::Labels => self.reading_labels(),
            State::LabelName => self.start_label_name(),
            State::LabelValue => self.start_label_value(),
            State::Value => self.reading_value(),
            State::Timestamp => self.start_timestamp(),
            State::Help => self.reading_help(),
            State::Type => self.reading_type(),
            State::Done => Ok(State::Done),
        }
    }

    fn start_of_line(&mut self) -> Step {
        self.line += 1;
        // The only place where the end of input is not an error.
        if self.skip_blank_tab().is_err() {
            return Ok(State::Done);
        }
        Ok(match self.byte {
            b'#' => State::StartComment,
            b'\n' => State::StartOfLine,
            _ => State::MetricName,
        })
    }

    fn start_comment(&mut self) -> Step {
        self.skip_blank_tab()?;
        if self.byte == b'\n' {
            return Ok(State::StartOfLine);
        }
        self.token_until_whitespace()?;
        if self.byte == b'\n' {
            return Ok(State::StartOfLine);
        }
        let keyword = match self.token.as_slice() {
            b"HELP" => State::Help,
            b"TYPE" => State::Type,
            _ => {
                // Any other comment: skip to the end of the line.
                while self.byte != b'\n' {
                    self.next()?;
                }
                return Ok(State::StartOfLine);
            }
        };
        self.skip_blank_tab()?;
        self.token_metric_name()?;
        if self.byte == b'\n' {
            return Ok(State::StartOfLine);
        }
        if !is_blank(self.byte) {
            return fail!("invalid metric name in comment");
        }
        self.set_or_create_family();
        self.skip_blank_tab()?;
        if self.byte == b'\n' {
            return Ok(State::StartOfLine);
        }
        Ok(keyword)
    }

    fn reading_metric_name(&mut self) -> Step {
        self.token_metric_name()?;
        if self.token.is_empty() {
            return fail!("invalid metric name");
        }
        self.set_or_create_family();
        self.family().r#type.get_or_insert(MetricType::Untyped as i32);
        self.metric = Metric::default();
        self.label_names.clear();
        self.skip_blank_tab_if_current_blank_tab()?;
        Ok(State::Labels)
    }

    fn reading_labels(&mut self) -> Step {
        if self.is_type(MetricType::Summary) || self.is_type(MetricType::Histogram) {
            self.group_labels.clear();
            self.bound = f64::NAN;
        }
        Ok(if self.byte == b'{' {
            State::LabelName
        } else {
            State::Value
        })
    }

    fn start_label_name(&mut self) -> Step {
        self.skip_blank_tab()?;
        if self.byte == b'}' {
            self.skip_blank_tab()?;
            return Ok(State::Value);
        }
        self.token_label_name()?;
        if self.token.is_empty() {
            return fail!("invalid label name for metric {}", quote(self.family_name()));
        }
        self.label = ascii_string(&self.token);
        if self.label == "__name__" {
            return fail!(r#"label name "__name__" is reserved"#);
        }
        self.label_is_real = !(self.is_type(MetricType::Summary) && self.label == "quantile"
            || self.is_type(MetricType::Histogram) && self.label == "le");
        // Go appends the pair now and checks for duplicates once '=' has been seen.
        let duplicate = self.label_is_real && !self.label_names.insert(self.label.clone());
        if self.label_is_real {
            self.metric.label.push(LabelPair {
                name: Some(self.label.clone()),
                value: None,
            });
        }
        self.skip_blank_tab_if_current_blank_tab()?;
        if self.byte != b'=' {
            return fail!("expected '=' after label name, found {}", quote_byte(self.byte));
        }
        if duplicate {
            return fail!("duplicate label names for metric {}", quote(self.family_name()));
        }
        Ok(State::LabelValue)
    }

    fn start_label_value(&mut self) -> Step {
        self.skip_blank_tab()?;
        if self.byte != b'"' {
            return fail!("expected '\"' at start of label value, found {}", quote_byte(self.byte));
        }
        self.token_label_value()?;
        let Ok(value) = String::from_utf8(self.token.clone()) else {
            return fail!("invalid label value {}", quote(&self.token));
        };
        if self.label_is_real
            && let Some(pair) = self.metric.label.last_mut()
        {
            pair.value = Some(value.clone());
        }
        // Summaries and histograms: `quantile`/`le` give the bound, the rest the grouping key.
        for (ty, special) in [(MetricType::Summary, "quantile"), (MetricType::Histogram, "le")] {
            if !self.is_type(ty) {
                continue;
            }
            if self.label != special {
                self.group_labels.insert(self.label.clone(), value.clone());
                continue;
            }
            let Some(bound) = parse_float(value.as_bytes()) else {
                return fail!("expected float as value for '{special}' label, got {}", quote(&value));
            };
            self.bound = bound;
        }
        self.skip_blank_tab()?;
        match self.byte {
            b',' => Ok(State::LabelName),
            b'}' => {
                self.skip_blank_tab()?;
                Ok(State::Value)
            }
            _ => fail!("unexpected end of label value {}", quote(&value)),
        }
    }

    fn reading_value(&mut self) -> Step {
        let metric = std::mem::take(&mut self.metric);
        let mf = self.mf;
        let grouped = self.is_type(MetricType::Summary) || self.is_type(MetricType::Histogram);
        let family = &mut self.families[mf];
        self.metric_at = if grouped {
            let key = (mf, std::mem::take(&mut self.group_labels));
            *self.groups.entry(key).or_insert_with(|| {
                family.metric.push(metric);
                family.metric.len() - 1
            })
        } else {
            family.metric.push(metric);
            family.metric.len() - 1
        };
        self.token_until_whitespace()?;
        let Some(value) = parse_float(&self.token) else {
            return fail!("expected float as value, got {}", quote(&self.token));
        };
        let (bound, is_count, is_sum) = (self.bound, self.is_count, self.is_sum);
        let family = &mut self.families[mf];
        let ty = family.r#type.and_then(|t| MetricType::try_from(t).ok());
        let Some(m) = family.metric.get_mut(self.metric_at) else {
            return fail!("internal error: lost metric");
        };
        match ty {
            Some(MetricType::Counter) => {
                m.counter = Some(Counter {
                    value: Some(value),
                    ..Default::default()
                })
            }
            Some(MetricType::Gauge) => m.gauge = Some(Gauge { value: Some(value) }),
            Some(MetricType::Untyped) => m.untyped = Some(Untyped { value: Some(value) }),
            Some(MetricType::Summary) => {
                let s = m.summary.get_or_insert_with(Summary::default);
                if is_count {
                    s.sample_count = Some(f64_to_u64(value));
                } else if is_sum {
                    s.sample_sum = Some(value);
                } else if !bound.is_nan() {
                    s.quantile.push(Quantile {
                        quantile: Some(bound),
                        value: Some(value),
                    });
                }
            }
            Some(MetricType::Histogram) => {
                let h = m.histogram.get_or_insert_with(Histogram::default);
                if is_count {
                    h.sample_count = Some(f64_to_u64(value));
                } else if is_sum {
                    h.sample_sum = Some(value);
                } else if !bound.is_nan() {
                    h.bucket.push(Bucket {
                        cumulative_count: Some(f64_to_u64(value)),
                        upper_bound: Some(bound),
                        ..Default::default()
                    });
                }
            }
            // GAUGE_HISTOGRAM: Go sets an "unexpected type" error that the next read overwrites,
            // so the sample is kept without a value.
            _ => {}
        }
        Ok(if self.byte == b'\n' {
            State::StartOfLine
        } else {
            State::Timestamp
        })
    }

    fn start_timestamp(&mut self) -> Step {
        self.skip_blank_tab()?;
        self.token_until_whitespace()?;
        let ts = std::str::from_utf8(&self.token)
            .ok()
            .and_then(|s| s.parse::<i64>().ok());
        let Some(ts) = ts else {
            return fail!("expected integer as timestamp, got {}", quote(&self.token));
        };
        let at = self.metric_at;
        if let Some(m) = self.family().metric.get_mut(at) {
            m.timestamp_ms = Some(ts);
        }
        self.token_until_newline(false)?;
        if !self.token.is_empty() {
            return fail!("spurious string after timestamp: {}", quote(&self.token));
        }
        Ok(State::StartOfLine)
    }

    fn reading_help(&mut self) -> Step {
        if self.family().help.is_some() {
            return fail!("second HELP line for metric name {}", quote(self.family_name()));
        }
        self.token_until_newline(true)?;
        let help = String::from_utf8_lossy(&self.token).into_owned();
        self.family().help = Some(help);
        Ok(State::StartOfLine)
    }

    fn reading_type(&mut self) -> Step {
        if self.family().r#type.is_some() {
            return fail!(
                "second TYPE line for metric name {}, or TYPE reported after samples",
                quote(self.family_name())
            );
        }
        self.token_until_newline(false)?;
        let Some(ty) = metric_type_from_token(&self.token) else {
            return fail!("unknown metric type {}", quote(&self.token));
        };
        self.family().r#type = Some(ty as i32);
        Ok(State::StartOfLine)
    }

    /// Go's `setOrCreateCurrentMF`: `x_count`/`x_sum` (and `x_bucket`) lines belong to family `x`
    /// when `x` is already known as a summary (histogram) and no family has the full name.
    fn set_or_create_family(&mut self) {
        self.is_count = false;
        self.is_sum = false;
        let name = ascii_string(&self.token);
        if let Some(&i) = self.by_name.get(&name) {
            self.mf = i;
            return;
        }
        let summary = strip_suffix(&name, &["_count", "_sum"]);
        let histogram = strip_suffix(&name, &["_count", "_sum", "_bucket"]);
        for (ty, base) in [(MetricType::Summary, summary), (MetricType::Histogram, histogram)] {
            if let Some(&i) = self.by_name.get(base)
                && self.families[i].r#type == Some(ty as i32)
            {
                self.mf = i;
                self.is_count = name.len() > 6 && name.ends_with("_count");
                self.is_sum = name.len() > 4 && name.ends_with("_sum");
                return;
            }
        }
        self.mf = self.families.len();
        self.by_name.insert(name.clone(), self.mf);
        self.families.push(MetricFamily {
            name: Some(name),
            ..Default::default()
        });
    }

    fn family(&mut self) -> &mut MetricFamily {
        &mut self.families[self.mf]
    }

    fn family_name(&self) -> &[u8] {
        self.families[self.mf].name.as_deref().unwrap_or_default().as_bytes()
    }

    fn is_type(&self, ty: MetricType) -> bool {
        self.families[self.mf].r#type == Some(ty as i32)
    }

    // Byte-level readers, each mirroring the Go helper of the same purpose.

    fn next(&mut self) -> Result<(), Fail> {
        let &b = self.input.get(self.pos).ok_or(Fail::Eof)?;
        self.pos += 1;
        self.byte = b;
        Ok(())
    }

    fn skip_blank_tab(&mut self) -> Result<(), Fail> {
        loop {
            self.next()?;
            if !is_blank(self.byte) {
                return Ok(());
            }
        }
    }

    fn skip_blank_tab_if_current_blank_tab(&mut self) -> Result<(), Fail> {
        if is_blank(self.byte) {
            self.skip_blank_tab()
        } else {
            Ok(())
        }
    }

    fn token_until_whitespace(&mut self) -> Result<(), Fail> {
        self.token.clear();
        while !is_blank(self.byte) && self.byte != b'\n' {
            self.token.push(self.byte);
            self.next()?;
        }
        Ok(())
    }

    /// With `escapes`, `\\` and `\n` are unescaped and any other escape is an error. Without,
    /// Go still swallows every backslash (it sets its `escaped` flag and never clears it).
    fn token_until_newline(&mut self, escapes: bool) -> Result<(), Fail> {
        self.token.clear();
        let mut escaped = false;
        loop {
            if escapes && escaped {
                match self.byte {
                    b'\\' => self.token.push(b'\\'),
                    b'n' => self.token.push(b'\n'),
                    b => return Err(invalid_escape(b)),
                }
                escaped = false;
            } else {
                match self.byte {
                    b'\n' => return Ok(()),
                    b'\\' => escaped = true,
                    b => self.token.push(b),
                }
            }
            self.next()?;
        }
    }

    fn token_metric_name(&mut self) -> Result<(), Fail> {
        self.token_while(|b| is_label_start(b) || b == b':', |b| is_label_char(b) || b == b':')
    }

    fn token_label_name(&mut self) -> Result<(), Fail> {
        self.token_while(is_label_start, is_label_char)
    }

    fn token_while(&mut self, start: fn(u8) -> bool, cont: fn(u8) -> bool) -> Result<(), Fail> {
        self.token.clear();
        if !start(self.byte) {
            return Ok(());
        }
        loop {
            self.token.push(self.byte);
            self.next()?;
            if !cont(self.byte) {
                return Ok(());
            }
        }
    }

    /// Reads a quoted label value; the opening quote is the current byte.
    fn token_label_value(&mut self) -> Result<(), Fail> {
        self.token.clear();
        let mut escaped = false;
        loop {
            self.next()?;
            match (escaped, self.byte) {
                (true, b @ (b'"' | b'\\')) => self.token.push(b),
                (true, b'n') => self.token.push(b'\n'),
                (true, b) => return Err(invalid_escape(b)),
                (false, b'"') => return Ok(()),
                (false, b'\n') => {
                    return fail!("label value {} contains unescaped new-line", quote(&self.token));
                }
                (false, b'\\') => {
                    escaped = true;
                    continue;
                }
                (false, b) => self.token.push(b),
            }
            escaped = false;
        }
    }
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_label_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_label_char(b: u8) -> bool {
    is_label_start(b) || b.is_ascii_digit()
}

/// Names are built from ASCII bytes only, so this conversion is lossless.
fn ascii_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn strip_suffix<'n>(name: &'n str, suffixes: &[&str]) -> &'n str {
    // Go requires a non-empty base: `isCount` is `len(name) > 6 && ...`.
    suffixes
        .iter()
        .find_map(|s| name.strip_suffix(s).filter(|base| !base.is_empty()))
        .unwrap_or(name)
}

fn invalid_escape(b: u8) -> Fail {
    // Go formats the byte with %c, i.e. as the code point U+00XX.
    Fail::Msg(format!("invalid escape sequence '\\{}'", char::from(b)))
}

/// Go matches `strings.ToUpper(token)` against the enum names. Go's simple upper-casing maps
/// only `ı` and `ſ` (besides ASCII) onto ASCII letters, so those are the only extras.
fn metric_type_from_token(token: &[u8]) -> Option<MetricType> {
    let upper: String = String::from_utf8_lossy(token)
        .chars()
        .map(|c| match c {
            'ı' => 'I',
            'ſ' => 'S',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    Some(match upper.as_str() {
        "COUNTER" => MetricType::Counter,
        "GAUGE" => MetricType::Gauge,
        "SUMMARY" => MetricType::Summary,
        "UNTYPED" => MetricType::Untyped,
        "HISTOGRAM" => MetricType::Histogram,
        "GAUGE_HISTOGRAM" => MetricType::GaugeHistogram,
        _ => return None,
    })
}

/// Appends one family in the text format exactly as Go's `expfmt.MetricFamilyToText` writes it.
/// Families without metrics (or without a name) write nothing.
///
/// Where Go fails half-way it writes the same partial output and stops: a type it cannot
/// print (GAUGE_HISTOGRAM or an unknown enum value) leaves `# TYPE name` without a newline,
/// and a metric lacking the sub-message of the family's type ends the family there. promhttp
/// then abandons the rest of the scrape; see [`is_text_encodable`] to detect this.
pub fn write_family(out: &mut Vec<u8>, family: &MetricFamily) {
    let metrics: Vec<&Metric> = family.metric.iter().collect();
    write_merged(out, family, &metrics);
}

/// Like [`write_family`] for a family whose metrics are held elsewhere: `header` gives the name,
/// help and type (its own metrics are ignored). Lets a server expose one family gathered from
/// many groups without copying their metrics.
pub fn write_merged(out: &mut Vec<u8>, header: &MetricFamily, metrics: &[&Metric]) {
    let family = header;
    let name = family.name.as_deref().unwrap_or_default();
    if name.is_empty() || metrics.is_empty() {
        return;
    }
    if let Some(help) = &family.help {
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        escape_into(out, help, false);
        out.push(b'\n');
    }
    out.extend_from_slice(b"# TYPE ");
    out.extend_from_slice(name.as_bytes());
    let Some((ty, word)) = text_type(family) else {
        return;
    };
    out.push(b' ');
    out.extend_from_slice(word.as_bytes());
    out.push(b'\n');
    for m in metrics {
        let Some(lines) = samples(ty, m) else { return };
        for (suffix, extra, value) in lines {
            write_sample(out, name, suffix, m, extra, value);
        }
    }
}

/// Whether Go's `MetricFamilyToText` would encode this family without an error (a name, a
/// type it can print, and every metric carrying the sub-message of that type). When it would
/// not, the reference writes a partial family and aborts the whole scrape there.
pub fn is_text_encodable(family: &MetricFamily) -> bool {
    let named = !family.name.as_deref().unwrap_or_default().is_empty();
    named && text_type(family).is_some_and(|(ty, _)| family.metric.iter().all(|m| samples(ty, m).is_some()))
}

/// The type and its word on the TYPE line; `None` where Go errors. Absent reads as COUNTER.
fn text_type(family: &MetricFamily) -> Option<(MetricType, &'static str)> {
    let ty = MetricType::try_from(family.r#type.unwrap_or_default()).ok()?;
    let word = match ty {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Summary => "summary",
        MetricType::Untyped => "untyped",
        MetricType::Histogram => "histogram",
        MetricType::GaugeHistogram => return None,
    };
    Some((ty, word))
}

/// One sample line: name suffix, extra `quantile`/`le` label, value.
type Sample = (&'static str, Option<(&'static str, f64)>, f64);

/// The lines Go writes for one metric, or `None` if it lacks the sub-message of its type.
fn samples(ty: MetricType, m: &Metric) -> Option<Vec<Sample>> {
    let v = |x: Option<f64>| x.unwrap_or_default();
    Some(match ty {
        MetricType::Counter => vec![("", None, v(m.counter.as_ref()?.value))],
        MetricType::Gauge => vec![("", None, v(m.gauge.as_ref()?.value))],
        MetricType::Untyped => vec![("", None, v(m.untyped.as_ref()?.value))],
        MetricType::Summary => {
            let s = m.summary.as_ref()?;
            let quantiles = s.quantile.iter();
            let mut lines: Vec<Sample> = quantiles
                .map(|q| ("", Some(("quantile", v(q.quantile))), v(q.value)))
                .collect();
            lines.push(("_sum", None, v(s.sample_sum)));
            lines.push(("_count", None, s.sample_count.unwrap_or_default() as f64));
            lines
        }
        MetricType::Histogram => {
            let h = m.histogram.as_ref()?;
            let count = h.sample_count.unwrap_or_default() as f64;
            let mut lines: Vec<Sample> = h
                .bucket
                .iter()
                .map(|b| {
                    let cumulative = b.cumulative_count.unwrap_or_default() as f64;
                    ("_bucket", Some(("le", v(b.upper_bound))), cumulative)
                })
                .collect();
            // Go adds a +Inf bucket unless *any* bucket already is +Inf.
            if !h.bucket.iter().any(|b| b.upper_bound == Some(f64::INFINITY)) {
                lines.push(("_bucket", Some(("le", f64::INFINITY)), count));
            }
            lines.push(("_sum", None, v(h.sample_sum)));
            lines.push(("_count", None, count));
            lines
        }
        MetricType::GaugeHistogram => return None,
    })
}

fn write_sample(out: &mut Vec<u8>, name: &str, suffix: &str, m: &Metric, extra: Option<(&str, f64)>, value: f64) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(suffix.as_bytes());
    if !m.label.is_empty() || extra.is_some() {
        let mut sep = b'{';
        for pair in &m.label {
            out.push(sep);
            out.extend_from_slice(pair.name.as_deref().unwrap_or_default().as_bytes());
            out.extend_from_slice(b"=\"");
            escape_into(out, pair.value.as_deref().unwrap_or_default(), true);
            out.push(b'"');
            sep = b',';
        }
        if let Some((label, bound)) = extra {
            out.push(sep);
            out.extend_from_slice(label.as_bytes());
            out.extend_from_slice(b"=\"");
            out.extend_from_slice(write_float(bound).as_bytes());
            out.push(b'"');
        }
        out.push(b'}');
    }
    out.push(b' ');
    out.extend_from_slice(write_float(value).as_bytes());
    if let Some(ts) = m.timestamp_ms {
        out.push(b' ');
        out.extend_from_slice(ts.to_string().as_bytes());
    }
    out.push(b'\n');
}

/// `\` and newline are escaped everywhere, `"` only inside label values.
fn escape_into(out: &mut Vec<u8>, s: &str, quotes: bool) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'"' if quotes => out.extend_from_slice(b"\\\""),
            b => out.push(b),
        }
    }
}

/// Go's `writeFloat`: like [`format_float`] except that it short-cuts `f == 0`, so -0 prints
/// as `0` in the text format (the JSON API, using `FormatFloat`, shows `-0`).
fn write_float(value: f64) -> String {
    if value == 0.0 {
        "0".to_owned()
    } else {
        format_float(value)
    }
}

/// Formats a float as Go's `strconv.FormatFloat(f, 'g', -1, 64)` with `+Inf`, `-Inf`, `NaN`:
/// the shortest digits that round-trip, in exponent form when the decimal exponent is below
/// -4 or at least 6 (`123456`, `1.234567e+06`, `0.0001`, `1e-05`, `-0`).
pub fn format_float(value: f64) -> String {
    go::format_float(value)
}
