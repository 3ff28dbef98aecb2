//! The HTTP surface: the Pushgateway's routes with its routing rules (decoded paths, path
//! cleaning, trailing-slash redirects, 405 with `Allow`), the push API, the exposition and the
//! JSON API.
//!
//! Routing is done by hand rather than with axum's router because clients depend on the exact
//! behaviour of Go's `ServeMux` + httprouter in front of the Pushgateway: a `%2F` splits a path
//! segment, `//` answers 301, `PUT /metrics/job/` answers 307, and so on.

pub mod exposition;
pub mod jobs;
pub mod push;
pub mod v1;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;

use crate::jobs::JobRegistry;
use crate::store::MetricStore;
use crate::telemetry::Telemetry;
use push::{Limits, PushTarget};

/// Everything the handlers share.
pub struct App {
    pub store: MetricStore,
    /// Every batch job, as the store's pushes and the config define them.
    pub jobs: Arc<JobRegistry>,
    /// The alerts raised from the jobs' states, and their delivery.
    pub alerts: crate::alerts::AlertHandle,
    pub telemetry: Arc<Telemetry>,
    /// Normalised: empty, or `/x` without a trailing slash.
    pub route_prefix: String,
    pub telemetry_path: String,
    pub enable_lifecycle: bool,
    pub enable_admin_api: bool,
    pub limits: Limits,
    /// Flag values as `/api/v1/status` reports them.
    pub flags: BTreeMap<String, String>,
    /// Signalled by `/-/quit`.
    pub quit: Notify,
}

/// A plain-text answer as Go's `http.Error` writes it (message plus newline).
pub fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    let mut body = message.into();
    body.push('\n');
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "404 page not found")
}

/// A redirect as Go's `http.Redirect` writes it: an HTML body for GET, a content type for HEAD.
fn redirect(method: &Method, status: StatusCode, location: &str) -> Response {
    let body = if *method == Method::GET {
        let href = location
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&#34;");
        format!(
            "<a href=\"{href}\">{}</a>.\n\n",
            status.canonical_reason().unwrap_or("")
        )
    } else {
        String::new()
    };
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if *method == Method::GET || *method == Method::HEAD {
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    r
}

/// Percent-decodes a path as Go's `url.URL.Path` does; `None` for an invalid escape.
fn decode_path(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            let s = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(s, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Go's `ServeMux` path cleaning: `path.Clean`, keeping a trailing slash.
fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut cleaned = format!("/{}", parts.join("/"));
    if p.ends_with('/') && cleaned != "/" {
        cleaned.push('/');
    }
    cleaned
}

/// Escapes a decoded path for a `Location` header as Go's `url.URL.EscapedPath` does.
fn escape_path(p: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b',')
        .remove(b':')
        .remove(b';')
        .remove(b'=')
        .remove(b'@')
        .remove(b'!')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    percent_encoding::utf8_percent_encode(p, KEEP).to_string()
}

/// How long a push body may take to arrive: a client trickling it holds a connection and memory.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The routes of the main router, relative to the route prefix.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Route<'a> {
    Healthy,
    Ready,
    Ui,
    Telemetry,
    /// `POST /-/reload`: re-read the config file.
    Reload,
    Push(&'a str, bool, &'a str),
}

impl Route<'_> {
    fn methods(&self) -> &'static [Method] {
        match self {
            Route::Healthy | Route::Ready | Route::Ui | Route::Telemetry => &[Method::GET],
            Route::Reload => &[Method::POST],
            Route::Push(..) => &[Method::DELETE, Method::POST, Method::PUT],
        }
    }
}

fn match_route<'a>(app: &App, path: &'a str) -> Option<Route<'a>> {
    match path {
        "/-/healthy" => return Some(Route::Healthy),
        "/-/ready" => return Some(Route::Ready),
        "/-/reload" => return Some(Route::Reload),
        "/" | "/status" => return Some(Route::Ui),
        p if p == app.telemetry_path => return Some(Route::Telemetry),
        _ => {}
    }
    let (rest, base64) = if let Some(r) = path.strip_prefix("/metrics/job/") {
        (r, false)
    } else {
        (path.strip_prefix("/metrics/job@base64/")?, true)
    };
    let (job, labels) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    (!job.is_empty()).then_some(Route::Push(job, base64, labels))
}

/// The one handler: routes as the Pushgateway's `ServeMux` + httprouter do, then counts the
/// request in `batchgate_http_requests_total`.
pub async fn dispatch(State(app): State<Arc<App>>, request: Request) -> Response {
    let method = request.method().clone();
    let (handler, response) = route(&app, request).await;
    app.telemetry
        .observe_request(handler, method.as_str(), response.status().as_u16());
    response
}

async fn route(app: &Arc<App>, request: Request) -> (&'static str, Response) {
    let method = request.method().clone();
    let Some(path) = decode_path(request.uri().path()) else {
        return ("other", (StatusCode::BAD_REQUEST, "400 Bad Request").into_response());
    };
    // `GET /-/quit` is registered outside the route prefix, `PUT`/`POST` inside it, as in the
    // Pushgateway.
    let prefix = app.route_prefix.as_str();
    let at_root = path == "/-/quit";
    let in_prefix = path.strip_prefix(prefix) == Some("/-/quit");
    if at_root || in_prefix {
        let mut allowed = Vec::new();
        if at_root {
            allowed.push(Method::GET);
        }
        if in_prefix {
            allowed.extend([Method::POST, Method::PUT]);
        }
        if at_root && method == Method::GET {
            let mut r = (StatusCode::METHOD_NOT_ALLOWED, "Only POST or PUT requests allowed.").into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return ("quit", r);
        }
        if !allowed.contains(&method) {
            return ("other", method_not_allowed(&method, &allowed));
        }
        return ("quit", quit(app));
    }
    let cleaned = clean_path(&path);
    if cleaned != path {
        let mut location = escape_path(&cleaned);
        if let Some(q) = request.uri().query() {
            location = format!("{location}?{q}");
        }
        return ("other", redirect(&method, StatusCode::MOVED_PERMANENTLY, &location));
    }
    let Some(rel) = path.strip_prefix(prefix) else {
        return ("other", not_found());
    };
    if rel.is_empty() {
        // `/prefix` → `/prefix/`, like the Pushgateway's router.
        return (
            "other",
            redirect(
                &method,
                StatusCode::MOVED_PERMANENTLY,
                &format!("{}/", escape_path(prefix)),
            ),
        );
    }
    if !rel.starts_with('/') {
        return ("other", not_found());
    }
    if rel == "/api/v1" {
        return (
            "other",
            redirect(
                &method,
                StatusCode::MOVED_PERMANENTLY,
                &format!("{}/", escape_path(&path)),
            ),
        );
    }
    if let Some(api_path) = rel.strip_prefix("/api/v1").filter(|p| p.starts_with('/')) {
        return v1::route(app, &method, api_path).await;
    }
    let Some(route) = match_route(app, rel) else {
        // httprouter's trailing-slash redirect, within the routes of the request's method.
        let toggled = match rel.strip_suffix('/') {
            Some(t) => t.to_string(),
            None => format!("{rel}/"),
        };
        // `/metrics/job/` has no job; httprouter still redirects it to `/metrics/job`.
        let push_root = rel == "/metrics/job/" && [Method::DELETE, Method::POST, Method::PUT].contains(&method);
        if push_root || match_route(app, &toggled).is_some_and(|r| r.methods().contains(&method)) {
            let code = if method == Method::GET {
                StatusCode::MOVED_PERMANENTLY
            } else {
                StatusCode::TEMPORARY_REDIRECT
            };
            return (
                "other",
                redirect(&method, code, &escape_path(&format!("{prefix}{toggled}"))),
            );
        }
        return ("other", not_found());
    };
    if !route.methods().contains(&method) {
        return ("other", method_not_allowed(&method, route.methods()));
    }
    let (parts, body) = request.into_parts();
    match route {
        Route::Healthy => ("healthy", health(app)),
        Route::Ready => ("ready", health(app)),
        Route::Ui => ("status", crate::ui::page(app)),
        Route::Telemetry => ("metrics", exposition::serve(app.clone(), &parts.headers).await),
        Route::Reload => ("reload", jobs::reload(app.clone()).await),
        Route::Push(job, job_base64, labels) => {
            let target = PushTarget {
                job,
                job_base64,
                labels,
            };
            if method == Method::DELETE {
                return ("delete", push::delete(app, target).await);
            }
            let limit = app.limits.max_body_bytes;
            let read = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await;
            let Ok(read) = read else {
                let why = format!("the request body did not arrive within {BODY_TIMEOUT:?}; nothing was stored");
                return ("push", plain(StatusCode::REQUEST_TIMEOUT, why));
            };
            let body = match read {
                Ok(b) => b,
                Err(e) => {
                    let too_big = std::error::Error::source(&e)
                        .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                        || e.to_string().contains("length limit");
                    let response = if too_big {
                        push::too_large(limit)
                    } else {
                        plain(StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}"))
                    };
                    return ("push", response);
                }
            };
            ("push", push::push(app, &method, target, &parts.headers, body).await)
        }
    }
}

/// 405 with `Allow`, or the automatic `OPTIONS` answer, as httprouter gives them.
fn method_not_allowed(method: &Method, allowed: &[Method]) -> Response {
    let mut names: Vec<&str> = allowed.iter().map(|m| m.as_str()).chain(["OPTIONS"]).collect();
    names.sort_unstable();
    let allow = names.join(", ");
    let mut r = if method == Method::OPTIONS {
        Response::new(Body::empty())
    } else {
        plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
    };
    if let Ok(v) = HeaderValue::from_str(&allow) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
}

fn health(app: &App) -> Response {
    match app.store.health() {
        Ok(()) => (StatusCode::OK, "OK").into_response(),
        Err(why) => plain(StatusCode::INTERNAL_SERVER_ERROR, why),
    }
}

fn quit(app: &App) -> Response {
    if !app.enable_lifecycle {
        return (StatusCode::FORBIDDEN, "Lifecycle API is not enabled.").into_response();
    }
    app.quit.notify_one();
    (StatusCode::OK, "Requesting termination... Goodbye!").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_decode_and_clean_as_go_does() {
        assert_eq!(
            decode_path("/metrics/job/j/path/x%2Fy").unwrap(),
            "/metrics/job/j/path/x/y"
        );
        assert_eq!(decode_path("/a%20b+c").unwrap(), "/a b+c");
        assert!(decode_path("/%%%").is_none());
        assert!(decode_path("/%2").is_none());
        assert!(decode_path("/a%+4b").is_none());
        assert_eq!(clean_path("/metrics/job/j2//a/b"), "/metrics/job/j2/a/b");
        assert_eq!(clean_path("/metrics/job/x/"), "/metrics/job/x/");
        assert_eq!(clean_path("/a/./b/../c"), "/a/c");
        assert_eq!(escape_path("/a b/ü"), "/a%20b/%C3%BC");
    }
}
