//! The HTTP side: the listening socket, the routes of `/api/v1`, the page and `/metrics`,
//! bearer-token checks for mutating calls and logs, and the followed run log.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use subtle::ConstantTimeEq;
use tiny_http::{Header, Method, Request, Response, Server};

use super::queue::Refused;
use super::status::{current_status, metrics_text};
use super::{now_ms, page, State};
use crate::history::{History, Trigger};
use crate::ops::{CheckSet, Operation};

type Resp = Response<std::io::Cursor<Vec<u8>>>;

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}

fn json_response<T: Serialize>(code: u16, body: &T) -> Resp {
    Response::from_data(serde_json::to_vec(body).unwrap_or_default())
        .with_status_code(code)
        .with_header(header("Content-Type", "application/json"))
}

fn error(code: u16, message: &str) -> Resp {
    json_response(code, &serde_json::json!({ "error": message }))
}

pub(super) fn serve(state: &State, server: &Server) {
    while let Ok(req) = server.recv() {
        handle(state, req);
    }
}

fn authorized(state: &State, req: &Request) -> bool {
    let presented =
        req.headers().iter().find(|h| h.field.equiv("Authorization")).and_then(|h| h.value.as_str().strip_prefix("Bearer ")).unwrap_or("");
    // Constant time in the token's content: no timing hints about how much of a guess matched.
    bool::from(presented.as_bytes().ct_eq(state.token.as_bytes()))
}

fn query(url: &str) -> BTreeMap<String, String> {
    url.split_once('?')
        .map(|(_, q)| {
            q.split('&').filter_map(|kv| kv.split_once('=').or(Some((kv, "")))).map(|(k, v)| (k.to_string(), v.to_string())).collect()
        })
        .unwrap_or_default()
}

fn handle(state: &State, req: Request) {
    // tiny_http reads a request's whole body before the answering thread is free again, and no
    // route takes a body: answer such requests on a thread of their own, so a client that
    // announces a body and never sends it holds no serving thread (the guard closes it).
    if req.body_length().is_some_and(|n| n > 0) || req.headers().iter().any(|h| h.field.equiv("Transfer-Encoding")) {
        let _ = std::thread::Builder::new()
            .name("no-body".into())
            .spawn(move || respond(req, error(413, "the API takes no request body; send parameters in the query string")));
        return;
    }
    let url = req.url().to_string();
    let path = url.split('?').next().unwrap_or("").trim_end_matches('/').to_string();
    let q = query(&url);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    let response = match (&method, segments.as_slice()) {
        (Method::Get, []) => {
            state.status_wanted.store(now_ms(), Ordering::Relaxed);
            Response::from_data(page::STATUS_PAGE.as_bytes().to_vec()).with_header(header("Content-Type", "text/html; charset=utf-8"))
        }
        (Method::Get, ["api", "v1", "health"]) => json_response(
            200,
            &serde_json::json!({ "ok": true, "stack": state.stack, "pid": std::process::id(), "engine": state.engine_name() }),
        ),
        (Method::Get, ["api", "v1", "status"]) => {
            let body = current_status(state);
            Response::from_data(body.as_ref().clone()).with_header(header("Content-Type", "application/json"))
        }
        (Method::Get, ["metrics"]) => {
            Response::from_data(metrics_text(state).into_bytes()).with_header(header("Content-Type", "text/plain; version=0.0.4"))
        }
        (Method::Get, ["api", "v1", "runs"]) => {
            let limit = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(50usize).min(1000);
            match state.history.runs(Some(&state.stack), limit) {
                Ok(runs) => {
                    let runs: Vec<_> = runs.into_iter().map(|r| state.unrecorded.overlay(r)).collect();
                    json_response(200, &serde_json::json!({ "runs": runs }))
                }
                Err(e) => error(500, &e.to_string()),
            }
        }
        (Method::Get, ["api", "v1", "runs", id]) => match id.parse::<i64>().ok().map(|id| state.history.run(id)) {
            Some(Ok(Some(mut detail))) => {
                detail.run = state.unrecorded.overlay(detail.run);
                json_response(200, &detail)
            }
            Some(Ok(None)) | None => error(404, &format!("no run {id}")),
            Some(Err(e)) => error(500, &e.to_string()),
        },
        (Method::Get, ["api", "v1", "runs", id, "log"]) => {
            if !authorized(state, &req) {
                error(401, "a run's log needs `Authorization: Bearer <token>`")
            } else {
                let Ok(id) = id.parse::<i64>() else { return respond(req, error(404, "no such run")) };
                let after = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
                if q.get("follow").is_some_and(|f| f == "1" || f == "true") {
                    let follower = LogFollower {
                        history: state.history.clone(),
                        unrecorded: state.unrecorded.clone(),
                        run: id,
                        after,
                        buf: Vec::new(),
                        pos: 0,
                    };
                    // A follower lasts as long as the run: it gets a thread of its own so the
                    // four serving threads stay free for status and API calls.
                    let _ = std::thread::Builder::new().name("follow".into()).spawn(move || {
                        let resp =
                            Response::new(200.into(), vec![header("Content-Type", "text/plain; charset=utf-8")], follower, None, None);
                        let _ = req.respond(resp);
                    });
                    return;
                }
                match state.history.log_since(id, after, 1000) {
                    Ok(lines) => json_response(200, &lines),
                    Err(e) => error(500, &e.to_string()),
                }
            }
        }
        (Method::Post, ["api", "v1", op]) => {
            if !authorized(state, &req) {
                error(401, "mutating calls need `Authorization: Bearer <token>`")
            } else {
                let operation = match *op {
                    "up" => Some(Operation::Up),
                    "down" => Some(Operation::Down { volumes: q.get("volumes").is_none_or(|v| v != "false") }),
                    "rebuild" => Some(Operation::Rebuild),
                    "verify" => Some(Operation::Verify),
                    "check" => CheckSet::parse(q.get("what").map(String::as_str).unwrap_or("all")).map(Operation::Check),
                    _ => None,
                };
                match operation {
                    None => error(404, &format!("unknown operation `{op}`; use up, down, rebuild, check, verify")),
                    Some(operation) => {
                        let wait = q.get("wait").is_none_or(|w| w != "false");
                        // The CLI forwarding to the daemon says so; the history keeps who asked.
                        let trigger = if q.get("trigger").is_some_and(|t| t == "cli") { Trigger::Cli } else { Trigger::Api };
                        match state.submit(operation, trigger, "", wait) {
                            Ok(run) => json_response(
                                202,
                                &serde_json::json!({ "run_id": run, "status": "queued", "log": format!("/api/v1/runs/{run}/log?follow=1") }),
                            ),
                            Err(Refused::Busy(busy)) => json_response(
                                409,
                                &serde_json::json!({ "error": format!("stack `{}` is busy with run {busy}; retry, or omit wait=false to queue", state.stack), "busy_run_id": busy }),
                            ),
                            Err(refused @ Refused::NotOnSwarm(_)) => error(400, &refused.to_string()),
                            Err(refused @ Refused::Unrecorded(_)) => error(
                                503,
                                &format!(
                                    "not started: {refused}; free space in {} and retry",
                                    state.history.path().parent().map(|d| d.display().to_string()).unwrap_or_default()
                                ),
                            ),
                        }
                    }
                }
            }
        }
        _ => error(404, &format!("no route {} {path}", method)),
    };
    respond(req, response);
}

fn respond(req: Request, resp: Resp) {
    let _ = req.respond(resp);
}

/// A run's log as a stream that ends when the run does (`?follow=1`, e.g. `curl -N`).
struct LogFollower {
    history: Arc<History>,
    unrecorded: super::queue::Unrecorded,
    run: i64,
    after: i64,
    buf: Vec<u8>,
    pos: usize,
}

impl LogFollower {
    /// Buffers up to `limit` new lines; false when there are none.
    fn fill(&mut self, limit: usize) -> std::io::Result<bool> {
        let lines = self.history.log_since(self.run, self.after, limit).map_err(std::io::Error::other)?;
        let Some(last) = lines.last() else { return Ok(false) };
        self.after = last.seq;
        self.buf = lines.iter().map(|l| format!("{}\n", l.line)).collect::<String>().into_bytes();
        self.pos = 0;
        Ok(true)
    }
}

impl Read for LogFollower {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.pos < self.buf.len() {
                let n = out.len().min(self.buf.len() - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.fill(500)? {
                continue;
            }
            let detail = self.history.run(self.run).map_err(std::io::Error::other)?;
            match detail.map(|mut d| {
                d.run = self.unrecorded.overlay(d.run);
                d
            }) {
                Some(d) if d.run.status.is_active() => std::thread::sleep(Duration::from_millis(100)),
                Some(d) => {
                    // Drain lines written just before the status changed, then the verdict.
                    if self.fill(100_000)? {
                        continue;
                    }
                    if self.run < 0 {
                        return Ok(0);
                    }
                    let verdict = format!(
                        "run {} {}{}\n",
                        self.run,
                        d.run.status.as_str(),
                        d.run.error.map(|e| format!(": {e}")).unwrap_or_default()
                    );
                    self.buf = verdict.into_bytes();
                    self.pos = 0;
                    self.run = -self.run;
                }
                None => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_parse_with_and_without_values() {
        let q = query("/api/v1/check?what=smoke&wait=false&x");
        assert_eq!((q["what"].as_str(), q["wait"].as_str(), q["x"].as_str()), ("smoke", "false", ""));
        assert!(query("/api/v1/up").is_empty());
    }
}
