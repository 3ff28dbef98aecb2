//! The groups page at `/` and `/status`: what the Pushgateway's page shows (every group, its
//! families and last push, delete a group, wipe when the admin API is on, build and flags),
//! server-rendered, with no external assets.

use std::fmt::Write as _;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::api::App;
use crate::api::v1::rfc3339_nano;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// URL-safe base64 with padding: the form the delete button sends (works for empty values).
fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE.encode(s)
}

pub fn page(app: &App) -> Response {
    let groups = app.store.snapshot();
    let mut html = String::with_capacity(4096);
    let prefix = esc(&app.route_prefix);
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>batchgate</title><style>body{{font-family:system-ui,sans-serif;margin:1rem;max-width:70rem}}\
         details{{border:1px solid #ccc;border-radius:4px;margin:.4rem 0;padding:.3rem .6rem}}\
         .fail{{color:#b00}}code{{font-size:.9em}}table{{border-collapse:collapse}}td{{padding:.1rem .6rem}}</style>\
         </head><body><h1>batchgate</h1><h2>Groups ({})</h2>",
        groups.len()
    );
    if app.enable_admin_api {
        let _ = write!(
            html,
            "<button onclick=\"if(confirm('Delete all {n} groups?'))fetch('{prefix}/api/v1/admin/wipe',{{method:'PUT'}}).then(()=>location.reload())\">Delete All {n} Groups</button>",
            n = groups.len()
        );
    }
    for (_, group) in &groups {
        // `job` first, then the other grouping labels by name.
        let mut labels: Vec<(&String, &String)> = group.labels.iter().collect();
        labels.sort_by_key(|(n, _)| (n.as_str() != "job", n.as_str()));
        let title: Vec<String> = labels
            .iter()
            .map(|(n, v)| format!("{}=\"{}\"", esc(n), esc(v)))
            .collect();
        let mut path = format!(
            "{prefix}/metrics/job@base64/{}",
            b64(group.labels.get("job").map_or("", String::as_str))
        );
        for (n, v) in labels.iter().filter(|(n, _)| n.as_str() != "job") {
            let _ = write!(path, "/{}@base64/{}", esc(n), b64(v));
        }
        let state = if group.last_push_successful() {
            ""
        } else {
            " <span class=fail>last push failed</span>"
        };
        let push_ns = (group.push_time() * 1e9) as i64;
        let _ = write!(
            html,
            "<details><summary><code>{}</code> — last push {}{state}</summary>\
             <button onclick=\"if(confirm('Delete this group?'))fetch('{path}',{{method:'DELETE'}}).then(()=>location.reload())\">Delete Group</button><ul>",
            title.join(", "),
            if push_ns > 0 {
                rfc3339_nano(push_ns)
            } else {
                "never".into()
            },
        );
        for (name, stored) in &group.families {
            let _ = write!(
                html,
                "<li><code>{}</code> {} ({} series)</li>",
                esc(name),
                stored.family.metric_type().proto_name().to_lowercase(),
                stored.family.metric.len()
            );
        }
        html.push_str("</ul></details>");
    }
    html.push_str("<h2>Status</h2><table>");
    let _ = write!(html, "<tr><td>version</td><td>{}</td></tr>", env!("CARGO_PKG_VERSION"));
    for (flag, value) in &app.flags {
        let _ = write!(
            html,
            "<tr><td>{}</td><td><code>{}</code></td></tr>",
            esc(flag),
            esc(value)
        );
    }
    html.push_str("</table></body></html>");
    let mut r = html.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}
