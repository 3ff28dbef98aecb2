//! Sending the metrics: `PUT`/`POST` with retries, async and blocking.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};

use crate::error::{Error, Result, is_retryable_status};
use crate::metrics::{Auth, BatchJobMetrics};
use crate::retry::RetryPolicy;

/// The content type of the text exposition format 0.0.4.
const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The most of an error answer kept in [`Error::Rejected`].
const MAX_ERROR_BODY: usize = 1024;

/// How a push changes the job's group on the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PushMethod {
    /// `PUT`: the group is replaced by the pushed metrics.
    Replace,
    /// `POST`: the pushed metric families replace those of the same name; others are kept.
    Add,
}

impl PushMethod {
    fn http(self) -> reqwest::Method {
        match self {
            PushMethod::Replace => reqwest::Method::PUT,
            PushMethod::Add => reqwest::Method::POST,
        }
    }
}

/// What one attempt came to.
enum Attempt {
    Done,
    /// Worth another try, after the wait the gateway asked for, if it did.
    Retry(Error, Option<Duration>),
    Fail(Error),
}

impl BatchJobMetrics {
    /// Pushes the metrics with `PUT`: the job's group on the gateway then holds exactly these.
    /// Retried according to the [`RetryPolicy`].
    pub async fn push(&self) -> Result<()> {
        self.push_with(PushMethod::Replace, &self.retry).await
    }

    /// Pushes the metrics with `POST`: families not sent (such as an earlier run's
    /// `last_success_timestamp` after a failure) stay on the gateway. Retried according to the
    /// [`RetryPolicy`].
    pub async fn push_add(&self) -> Result<()> {
        self.push_with(PushMethod::Add, &self.retry).await
    }

    /// [`push`](Self::push) for code without an async runtime. Returns
    /// [`Error::BlockingInAsyncContext`] when called on a runtime thread.
    pub fn push_blocking(&self) -> Result<()> {
        self.push_with_blocking(PushMethod::Replace, &self.retry)
    }

    /// [`push_add`](Self::push_add) for code without an async runtime. Returns
    /// [`Error::BlockingInAsyncContext`] when called on a runtime thread.
    pub fn push_add_blocking(&self) -> Result<()> {
        self.push_with_blocking(PushMethod::Add, &self.retry)
    }

    /// Pushes with an explicit method and retry policy.
    ///
    /// The body is taken when this is called, so recording more afterwards does not change a
    /// push in flight.
    pub fn push_with(
        &self,
        method: PushMethod,
        retry: &RetryPolicy,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let prepared = self.prepare(method);
        let retry = retry.clone();
        async move { send_with_retries(prepared?, &retry).await }
    }

    /// The blocking form of [`push_with`](Self::push_with): runs it on a private
    /// single-threaded runtime.
    pub fn push_with_blocking(&self, method: PushMethod, retry: &RetryPolicy) -> Result<()> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::BlockingInAsyncContext);
        }
        let push = self.push_with(method, retry);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?
            .block_on(push)
    }

    fn prepare(&self, method: PushMethod) -> Result<Prepared> {
        Ok(Prepared {
            url: self.push_url()?,
            body: self.encode()?,
            method: method.http(),
            timeout: self.timeout,
            auth: self.auth.clone(),
        })
    }
}

/// Everything one push needs, owned (so the push future does not borrow the metrics).
struct Prepared {
    url: String,
    body: Vec<u8>,
    method: reqwest::Method,
    timeout: Duration,
    auth: Option<Auth>,
}

async fn send_with_retries(req: Prepared, retry: &RetryPolicy) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(req.timeout)
        .user_agent(concat!("batchgate-client/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(Error::Client)?;
    let attempts = retry.total_attempts();
    let mut attempt = 1;
    loop {
        match send_once(&client, &req, attempt).await {
            Attempt::Done => return Ok(()),
            Attempt::Fail(e) => return Err(e),
            Attempt::Retry(e, _) if attempt >= attempts => return Err(e),
            Attempt::Retry(_, retry_after) => {
                tokio::time::sleep(retry.wait(attempt, retry_after)).await;
                attempt += 1;
            }
        }
    }
}

async fn send_once(client: &reqwest::Client, req: &Prepared, attempt: u32) -> Attempt {
    let mut builder = client
        .request(req.method.clone(), &req.url)
        .header(CONTENT_TYPE, TEXT_CONTENT_TYPE)
        .body(req.body.clone());
    builder = match &req.auth {
        Some(Auth::Basic { username, password }) => builder.basic_auth(username, password.as_deref()),
        Some(Auth::Bearer(token)) => builder.bearer_auth(token),
        None => builder,
    };
    let response = match builder.send().await {
        Ok(r) => r,
        Err(source) => {
            let retryable = !source.is_builder();
            let e = Error::Transport {
                url: req.url.clone(),
                attempts: attempt,
                // The URL is in the error already.
                source: source.without_url(),
            };
            return if retryable {
                Attempt::Retry(e, None)
            } else {
                Attempt::Fail(e)
            };
        }
    };
    let status = response.status();
    if status.is_success() {
        return Attempt::Done;
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // The answer's text explains a rejection; an unreadable one is not worth failing over.
    let mut body = response.text().await.unwrap_or_default();
    if body.len() > MAX_ERROR_BODY {
        let cut = (0..=MAX_ERROR_BODY)
            .rev()
            .find(|i| body.is_char_boundary(*i))
            .unwrap_or(0);
        body.truncate(cut);
        body.push('…');
    }
    let e = Error::Rejected {
        url: req.url.clone(),
        status: status.as_u16(),
        body: body.trim_end().to_string(),
        attempts: attempt,
    };
    if is_retryable_status(status.as_u16()) {
        Attempt::Retry(e, retry_after)
    } else {
        Attempt::Fail(e)
    }
}
