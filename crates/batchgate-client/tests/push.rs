//! The client against a scripted HTTP server on 127.0.0.1: request shape, retries, backoff and
//! timeouts. (Pushes to real gateways are tested in `crates/batchgate/tests/sdk.rs`.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use batchgate_client::{BatchJobMetrics, Error, PushMethod, RetryPolicy};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer: status, extra headers.
type Answer = (u16, &'static [(&'static str, &'static str)]);

/// A server answering each request with the next scripted answer (the last one repeats).
struct Scripted {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    _thread: JoinHandle<()>,
}

impl Scripted {
    fn start(answers: Vec<Answer>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        Scripted::on(listener, answers)
    }

    fn on(listener: TcpListener, answers: Vec<Answer>) -> Scripted {
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let thread = std::thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { return };
                let answer = answers[i.min(answers.len() - 1)];
                serve(stream, answer, &seen);
            }
        });
        Scripted {
            url,
            requests,
            _thread: thread,
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one request, records it (before answering, so a client that got its answer always
/// finds its request recorded) and answers it, closing the connection.
fn serve(stream: TcpStream, (status, headers): Answer, seen: &Mutex<Vec<Request>>) -> Option<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut req_headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        req_headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let len = req_headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let text = format!("scripted answer {status}\n");
    let mut answer = format!(
        "HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\nConnection: close\r\n",
        text.len()
    );
    for (n, v) in headers {
        answer.push_str(&format!("{n}: {v}\r\n"));
    }
    answer.push_str("\r\n");
    answer.push_str(&text);
    seen.lock().unwrap().push(Request {
        method,
        path,
        headers: req_headers,
        body,
    });
    let mut stream = stream;
    stream.write_all(answer.as_bytes()).ok()
}

/// Fast backoff for tests: 100 ms, 200 ms, …
fn fast(attempts: u32) -> RetryPolicy {
    RetryPolicy::attempts(attempts).with_initial_backoff(Duration::from_millis(100))
}

#[test]
fn push_sends_put_with_the_text_body_and_escaped_key() {
    let server = Scripted::start(vec![(200, &[])]);
    let m = BatchJobMetrics::new("ef update", &server.url)
        .grouping_label("instance", "worker-1")
        .grouping_label("path", "/var/tmp");
    m.start().success();
    m.push_blocking().expect("push");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "PUT");
    assert_eq!(
        r.path,
        "/metrics/job@base64/ZWYgdXBkYXRl/instance/worker-1/path@base64/L3Zhci90bXA"
    );
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let body = String::from_utf8(r.body.clone()).expect("utf-8");
    assert!(
        body.contains("gl_batch_job_status{job_name=\"ef update\",status=\"completed\"} 1\n"),
        "{body}"
    );
    assert_eq!(body.as_bytes(), m.encode().expect("encode"));
}

#[test]
fn push_add_sends_post() {
    let server = Scripted::start(vec![(202, &[])]);
    let m = BatchJobMetrics::new("j", &server.url);
    m.push_add_blocking().expect("push");
    assert_eq!(server.requests()[0].method, "POST");
}

#[test]
fn basic_auth_and_bearer_token() {
    let server = Scripted::start(vec![(200, &[])]);
    BatchJobMetrics::new("j", &server.url)
        .basic_auth("user", Some("pa:ss".to_string()))
        .push_blocking()
        .expect("push");
    BatchJobMetrics::new("j", &server.url)
        .bearer_token("t0k3n")
        .push_blocking()
        .expect("push");
    let reqs = server.requests();
    // base64("user:pa:ss")
    assert_eq!(reqs[0].header("authorization"), Some("Basic dXNlcjpwYTpzcw=="));
    assert_eq!(reqs[1].header("authorization"), Some("Bearer t0k3n"));
}

#[test]
fn a_route_prefix_is_kept() {
    let server = Scripted::start(vec![(200, &[])]);
    BatchJobMetrics::new("j", format!("{}/gw/", server.url))
        .push_blocking()
        .expect("push");
    assert_eq!(server.requests()[0].path, "/gw/metrics/job/j");
}

#[test]
fn a_400_is_not_retried() {
    let server = Scripted::start(vec![(400, &[])]);
    let m = BatchJobMetrics::new("j", &server.url).retry(fast(3));
    let err = m.push_blocking().expect_err("400 must fail");
    assert_eq!(server.requests().len(), 1);
    match &err {
        Error::Rejected {
            status, attempts, body, ..
        } => {
            assert_eq!((*status, *attempts), (400, 1));
            assert_eq!(body, "scripted answer 400");
        }
        e => panic!("unexpected error {e:?}"),
    }
    assert!(!err.is_transient());
    assert_eq!(err.status(), Some(400));
}

#[test]
fn other_4xx_are_not_retried() {
    for status in [401, 403, 404, 405, 413] {
        let server = Scripted::start(vec![(status, &[])]);
        let err = BatchJobMetrics::new("j", &server.url)
            .retry(fast(3))
            .push_blocking()
            .expect_err("4xx must fail");
        assert_eq!(err.status(), Some(status));
        assert_eq!(server.requests().len(), 1, "{status} was retried");
    }
}

#[test]
fn server_errors_and_429_are_retried_until_success() {
    let server = Scripted::start(vec![(503, &[]), (429, &[]), (200, &[])]);
    let started = Instant::now();
    BatchJobMetrics::new("j", &server.url)
        .retry(fast(3))
        .push_blocking()
        .expect("third attempt succeeds");
    assert_eq!(server.requests().len(), 3);
    // Waits of 100 ms and 200 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn retries_stop_after_the_last_attempt_within_the_policy_time() {
    let server = Scripted::start(vec![(500, &[])]);
    let policy = fast(4);
    let started = Instant::now();
    let err = BatchJobMetrics::new("j", &server.url)
        .retry(policy.clone())
        .push_blocking()
        .expect_err("always 500");
    let elapsed = started.elapsed();
    assert_eq!(server.requests().len(), 4);
    assert!(
        matches!(
            err,
            Error::Rejected {
                status: 500,
                attempts: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    // 100 + 200 + 400 ms of backoff, plus four quick requests.
    assert_eq!(policy.total_backoff(), Duration::from_millis(700));
    assert!(elapsed >= policy.total_backoff(), "{elapsed:?}");
    assert!(elapsed < policy.total_backoff() + Duration::from_secs(2), "{elapsed:?}");
}

#[test]
fn retry_after_is_honoured() {
    let server = Scripted::start(vec![(429, &[("Retry-After", "1")]), (200, &[])]);
    let started = Instant::now();
    BatchJobMetrics::new("j", &server.url)
        .retry(fast(2))
        .push_blocking()
        .expect("second attempt succeeds");
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
}

#[test]
fn a_gateway_that_comes_up_during_the_backoff_gets_the_push() {
    // Reserve a port, free it, and only listen on it again after the first attempt failed.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let m = BatchJobMetrics::new("j", &url).retry(
        RetryPolicy::attempts(3)
            .with_initial_backoff(Duration::from_millis(800))
            .with_max_backoff(Duration::from_secs(2)),
    );
    m.start().success();
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        Scripted::on(
            TcpListener::bind(("127.0.0.1", port)).expect("rebind"),
            vec![(200, &[])],
        )
    });
    let started = Instant::now();
    let result = m.push_blocking();
    let server = late.join().expect("server thread");
    result.expect("the retry reaches the gateway");
    assert!(started.elapsed() >= Duration::from_millis(800));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert!(String::from_utf8_lossy(&reqs[0].body).contains("status=\"completed\"} 1"));
}

#[test]
fn a_down_gateway_fails_after_the_policy_with_a_transport_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let policy = fast(3);
    let started = Instant::now();
    let err = BatchJobMetrics::new("j", format!("127.0.0.1:{port}"))
        .retry(policy.clone())
        .push_blocking()
        .expect_err("nothing listens");
    let elapsed = started.elapsed();
    assert!(matches!(err, Error::Transport { attempts: 3, .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(elapsed >= policy.total_backoff(), "{elapsed:?}");
    assert!(elapsed < policy.total_backoff() + Duration::from_secs(2), "{elapsed:?}");
}

#[test]
fn a_hanging_gateway_times_out() {
    // Accepts connections (the kernel does) but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let started = Instant::now();
    let err = BatchJobMetrics::new("j", url)
        .timeout(Duration::from_millis(300))
        .retry(fast(2))
        .push_blocking()
        .expect_err("no answer");
    let elapsed = started.elapsed();
    assert!(matches!(err, Error::Transport { attempts: 2, .. }), "{err:?}");
    // Two 300 ms timeouts and a 100 ms wait.
    assert!(elapsed >= Duration::from_millis(700), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    drop(listener);
}

#[test]
fn configuration_errors_are_reported_without_a_request() {
    assert!(matches!(
        BatchJobMetrics::new("", "http://127.0.0.1:1").push_blocking(),
        Err(Error::EmptyJobName)
    ));
    assert!(matches!(
        BatchJobMetrics::new("j", "http://127.0.0.1:1")
            .grouping_label("job", "x")
            .push_blocking(),
        Err(Error::InvalidLabelName { .. })
    ));
    assert!(matches!(
        BatchJobMetrics::new("j", "ftp://127.0.0.1:1").validate(),
        Err(Error::InvalidGatewayUrl { .. })
    ));
    assert!(matches!(
        BatchJobMetrics::new("j", "http://127.0.0.1:1").prefix("0x").validate(),
        Err(Error::InvalidPrefix(_))
    ));
}

#[tokio::test]
async fn async_push_and_blocking_refused_inside_a_runtime() {
    let server = Scripted::start(vec![(200, &[])]);
    let m = BatchJobMetrics::new("j", &server.url);
    let run = m.start();
    run.failure(3);
    m.push().await.expect("async push");
    m.push_add().await.expect("async push_add");
    assert!(matches!(m.push_blocking(), Err(Error::BlockingInAsyncContext)));
    let methods: Vec<_> = server.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["PUT", "POST"]);
}

#[tokio::test]
async fn push_with_takes_the_body_when_called() {
    let server = Scripted::start(vec![(200, &[])]);
    let m = BatchJobMetrics::new("j", &server.url);
    let push = m.push_with(PushMethod::Add, &RetryPolicy::none());
    m.record_errors(5);
    tokio::spawn(push).await.expect("task").expect("push");
    let body = String::from_utf8(server.requests()[0].body.clone()).expect("utf-8");
    assert!(body.contains("gl_batch_job_errors_total{job_name=\"j\"} 0\n"), "{body}");
}
