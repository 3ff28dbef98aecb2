//! Run history (SPEC §3.3), kept in the `runs` table of the store's SQLite file.
//!
//! The table is batchgate's own (the store verified the file before this opens it). Runs are
//! written by a dedicated thread, never on a tokio worker, so a slow disk delays history, not
//! pushes. Each job keeps at most `retention` runs, oldest dropped first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;

use jiff::{SignedDuration, Timestamp};
use rusqlite::{Connection, OpenFlags, params};

use super::runs::Outcome;
use super::view::Run;

/// Runs kept per job unless `--jobs.run-retention` says otherwise.
pub const DEFAULT_RETENTION: usize = 100;

/// Why run history cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot open the run history in {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot start the run history writer: {0}")]
    Thread(#[source] std::io::Error),
}

enum Command {
    Insert {
        job: String,
        run: Run,
    },
    /// Answers once every earlier command is written.
    Flush(mpsc::Sender<()>),
}

/// Handle to the run history writer; without a file (tests, `History::in_memory`) it keeps nothing.
pub struct History {
    tx: Option<mpsc::Sender<Command>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl History {
    /// A history that persists nothing.
    pub fn in_memory() -> History {
        History {
            tx: None,
            thread: Mutex::new(None),
        }
    }

    /// Opens (creating the table if need be) the history in `db`, the store's data file, and
    /// returns the kept runs of every job, newest first, at most `retention` each.
    pub fn open(db: &Path, retention: usize) -> Result<(History, BTreeMap<String, Vec<Run>>), HistoryError> {
        let sqlite = |source| HistoryError::Sqlite {
            path: db.display().to_string(),
            source,
        };
        let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(sqlite)?;
        conn.pragma_update(None, "busy_timeout", 5000).map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sqlite)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS runs (
                 job TEXT NOT NULL,
                 start_ms INTEGER,
                 end_ms INTEGER,
                 outcome TEXT,
                 duration_ms INTEGER,
                 exit_code INTEGER
             );
             CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job, end_ms);",
        )
        .map_err(sqlite)?;
        let loaded = load(&conn, retention).map_err(sqlite)?;
        let (tx, rx) = mpsc::channel();
        let path = db.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("batchgate-history".into())
            .spawn(move || writer(conn, path, retention, rx))
            .map_err(HistoryError::Thread)?;
        let history = History {
            tx: Some(tx),
            thread: Mutex::new(Some(thread)),
        };
        Ok((history, loaded))
    }

    /// Queues a finished run for writing.
    pub fn record(&self, job: &str, run: &Run) {
        if let Some(tx) = &self.tx {
            let command = Command::Insert {
                job: job.to_owned(),
                run: run.clone(),
            };
            if tx.send(command).is_err() {
                tracing::error!(job, "the run history writer has stopped; this run is not kept");
            }
        }
    }

    /// Blocks until every run queued so far is written (call off the async workers).
    pub fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = mpsc::channel();
        if tx.send(Command::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }
}

impl Drop for History {
    fn drop(&mut self) {
        // Closing the channel ends the writer once the queue is drained.
        self.tx = None;
        let thread = self.thread.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

fn to_ms(t: Option<Timestamp>) -> Option<i64> {
    t.map(|t| t.as_millisecond())
}

fn from_ms(ms: Option<i64>) -> Option<Timestamp> {
    ms.and_then(|ms| Timestamp::from_millisecond(ms).ok())
}

fn outcome_name(o: Option<Outcome>) -> Option<&'static str> {
    o.map(|o| match o {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
    })
}

fn load(conn: &Connection, retention: usize) -> rusqlite::Result<BTreeMap<String, Vec<Run>>> {
    let mut stmt = conn.prepare(
        "SELECT job, start_ms, end_ms, outcome, duration_ms, exit_code FROM runs \
         ORDER BY job, end_ms DESC, rowid DESC",
    )?;
    let rows = stmt.query_map([], |r| {
        let outcome: Option<String> = r.get(3)?;
        let run = Run {
            start: from_ms(r.get(1)?),
            end: from_ms(r.get(2)?),
            outcome: match outcome.as_deref() {
                Some("success") => Some(Outcome::Success),
                Some("failure") => Some(Outcome::Failure),
                _ => None,
            },
            duration: r.get::<_, Option<i64>>(4)?.map(SignedDuration::from_millis),
            exit_code: r.get(5)?,
        };
        Ok((r.get::<_, String>(0)?, run))
    })?;
    let mut out: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    for row in rows {
        let (job, run) = row?;
        let runs = out.entry(job).or_default();
        if runs.len() < retention {
            runs.push(run);
        }
    }
    Ok(out)
}

fn insert(conn: &Connection, retention: usize, job: &str, run: &Run) -> rusqlite::Result<()> {
    let duration_ms = run
        .duration
        .map(|d| d.as_millis().clamp(i64::MIN.into(), i64::MAX.into()) as i64);
    conn.execute(
        "INSERT INTO runs (job, start_ms, end_ms, outcome, duration_ms, exit_code) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            job,
            to_ms(run.start),
            to_ms(run.end),
            outcome_name(run.outcome),
            duration_ms,
            run.exit_code
        ],
    )?;
    conn.execute(
        "DELETE FROM runs WHERE job = ?1 AND rowid NOT IN \
         (SELECT rowid FROM runs WHERE job = ?1 ORDER BY end_ms DESC, rowid DESC LIMIT ?2)",
        params![job, i64::try_from(retention).unwrap_or(i64::MAX)],
    )?;
    Ok(())
}

fn writer(conn: Connection, path: PathBuf, retention: usize, rx: mpsc::Receiver<Command>) {
    for command in rx {
        match command {
            Command::Insert { job, run } => {
                if let Err(e) = insert(&conn, retention, &job, &run) {
                    tracing::error!(job, path = %path.display(), error = %e, "cannot write run history");
                }
            }
            Command::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(end_secs: i64, outcome: Outcome) -> Run {
        let end = Timestamp::from_second(end_secs).unwrap();
        Run {
            start: Some(end - SignedDuration::from_secs(30)),
            end: Some(end),
            outcome: Some(outcome),
            duration: Some(SignedDuration::from_millis(30_250)),
            exit_code: Some(if outcome == Outcome::Success { 0 } else { 2 }),
        }
    }

    fn empty_db(dir: &Path) -> PathBuf {
        let path = dir.join("batchgate.db");
        Connection::open(&path).unwrap();
        path
    }

    #[test]
    fn runs_survive_a_reopen_newest_first_within_retention() {
        let dir = tempfile::tempdir().unwrap();
        let db = empty_db(dir.path());
        let (history, loaded) = History::open(&db, 3).unwrap();
        assert!(loaded.is_empty());
        for i in 0..5 {
            history.record("ef-update", &run(1_000 + i, Outcome::Success));
        }
        history.record("data-sync", &run(500, Outcome::Failure));
        history.flush();
        drop(history);

        let (_history, loaded) = History::open(&db, 3).unwrap();
        let ends: Vec<i64> = loaded["ef-update"].iter().map(|r| r.end.unwrap().as_second()).collect();
        assert_eq!(ends, [1_004, 1_003, 1_002]);
        assert_eq!(loaded["ef-update"][0], run(1_004, Outcome::Success));
        assert_eq!(loaded["data-sync"], [run(500, Outcome::Failure)]);
        let conn = Connection::open(&db).unwrap();
        let rows: i64 = conn.query_row("SELECT count(*) FROM runs", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 4, "retention deletes old rows on disk too");
    }

    #[test]
    fn a_lower_retention_at_load_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let db = empty_db(dir.path());
        let (history, _) = History::open(&db, 10).unwrap();
        for i in 0..4 {
            history.record("a", &run(i, Outcome::Success));
        }
        drop(history);
        let (_h, loaded) = History::open(&db, 2).unwrap();
        assert_eq!(loaded["a"].len(), 2);
        assert_eq!(loaded["a"][0].end, Some(Timestamp::from_second(3).unwrap()));
    }

    #[test]
    fn in_memory_keeps_nothing() {
        let h = History::in_memory();
        h.record("a", &run(1, Outcome::Success));
        h.flush();
    }
}
