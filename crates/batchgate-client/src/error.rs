//! The errors of configuring and pushing.

/// Why a push did not happen or was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The job name is empty (the gateway answers `400 job name is required`).
    #[error("the job name must not be empty")]
    EmptyJobName,

    /// The gateway URL cannot be parsed, or is not a plain `http://host[:port][/prefix]`.
    #[error("invalid gateway URL {url:?}: {reason}")]
    InvalidGatewayUrl { url: String, reason: String },

    /// A grouping label name the gateway would refuse, or one the client sets itself.
    #[error("invalid grouping label name {name:?}: {reason}")]
    InvalidLabelName { name: String, reason: &'static str },

    /// The metric prefix is not a valid start of a metric name.
    #[error("invalid metric prefix {0:?}: it must match [a-zA-Z_:][a-zA-Z0-9_:]*")]
    InvalidPrefix(String),

    /// The gateway answered with a status that is not a success.
    ///
    /// `attempts` counts every request sent, including the last one; a 4xx other than 429 is
    /// never retried, so it is always `1` for those.
    #[error("gateway {url} answered {status} after {attempts} attempt(s): {body}")]
    Rejected {
        url: String,
        status: u16,
        body: String,
        attempts: u32,
    },

    /// The request did not get an answer: connection refused, reset, timed out…
    #[error("cannot reach gateway {url} after {attempts} attempt(s)")]
    Transport {
        url: String,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },

    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),

    /// A `*_blocking` method was called on a thread that runs an async runtime, where blocking
    /// would stall it (use the `async` method there).
    #[error("a blocking push was called from inside an async runtime; use the async method with `.await` there")]
    BlockingInAsyncContext,

    /// The private runtime of a blocking push could not be started.
    #[error("cannot start the runtime of a blocking push")]
    Runtime(#[source] std::io::Error),
}

impl Error {
    /// The HTTP status the gateway answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the failure was the gateway being unreachable or unwell (connection errors,
    /// timeouts, 5xx, 429) as opposed to a push or configuration it will never accept.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Rejected { status, .. } => is_retryable_status(*status),
            _ => false,
        }
    }
}

/// 5xx and 429 are worth retrying; every other 4xx will get the same answer again.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
