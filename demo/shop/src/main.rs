//! `shop`: the demo application stagectl brings up in its example stack.
//!
//! A tiny JSON HTTP API on std threads + tiny_http, reading PostgreSQL and Redis.
//!
//! Configuration (environment; values are never logged):
//! - `DATABASE_URL`  e.g. `postgres://postgres@db:5432/shop`
//! - `REDIS_URL`     e.g. `redis://cache:6379/`
//! - `PORT`          listening port, default 8080
//! - `API_KEY`       when set (non-empty), POST endpoints require `Authorization: Bearer <API_KEY>`
//! - `WORKERS`       worker threads, default 8
//!
//! Endpoints:
//! - `GET  /`               service name and version
//! - `GET  /healthz`        200 when PostgreSQL (`select 1`) and Redis (`PING`) answer, else 503
//! - `GET  /products`       all products, cached in Redis for 5 s (key `shop:products`)
//! - `GET  /products/{id}`  one product, or 404
//! - `POST /orders`         `{"product_id":1,"quantity":2}` → 201 with the order; 400 on bad input
//! - `GET  /slow?ms=N`      sleeps N ms (capped at 10000), then 200
//! - `GET  /stats`          counts of products and orders
//!
//! Each worker thread owns one PostgreSQL client and one Redis connection, opened lazily and
//! re-opened after an error, so the app starts without its backends and survives their restarts.
//!
//! Logging: stdout carries `shop listening on 0.0.0.0:PORT` and one line per request
//! (`METHOD /path STATUS 1.2ms`, query string left out); diagnostics go to stderr.
//! Environment values are never printed.

use std::env;
use std::io::{Read, Write};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const DEFAULT_PORT: u16 = 8080;
const DEFAULT_WORKERS: usize = 8;
const PRODUCTS_CACHE_KEY: &str = "shop:products";
const PRODUCTS_CACHE_TTL_SECS: u64 = 5;
const SLOW_CAP_MS: u64 = 10_000;
const MAX_BODY_BYTES: u64 = 64 * 1024;
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const PG_DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(2);
const PG_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

fn main() {
    let config = Arc::new(Config::from_env());
    install_signal_handlers();

    let addr = format!("0.0.0.0:{}", config.port);
    let server = match Server::http(&addr) {
        Ok(server) => Arc::new(server),
        Err(err) => {
            eprintln!("shop: cannot listen on {addr}: {err}");
            std::process::exit(1);
        }
    };
    println!("shop listening on {addr}");

    let workers: Vec<_> = (0..config.workers)
        .map(|i| {
            let server = Arc::clone(&server);
            let config = Arc::clone(&config);
            thread::Builder::new().name(format!("worker-{i}")).spawn(move || worker(&server, &config)).expect("spawn worker thread")
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

/// SIGTERM/SIGINT end the process at once. Without a handler, PID 1 in a container would ignore
/// them (the kernel drops default-action signals for PID 1) and `docker stop` would wait for SIGKILL.
fn install_signal_handlers() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(err) => {
            eprintln!("shop: cannot install signal handlers: {err}");
            std::process::exit(1);
        }
    };
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
                eprintln!("shop: received {name}, exiting");
                let _ = std::io::stdout().flush();
                std::process::exit(0);
            }
        })
        .expect("spawn signal thread");
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

struct Config {
    port: u16,
    workers: usize,
    /// `Err` explains (without the value) why PostgreSQL is unusable.
    pg: Result<postgres::Config, &'static str>,
    redis: Result<redis::Client, &'static str>,
    api_key: Option<String>,
}

impl Config {
    fn from_env() -> Config {
        let port = match env::var("PORT") {
            Ok(v) => v.trim().parse().unwrap_or_else(|_| {
                eprintln!("shop: PORT is not a valid port number");
                std::process::exit(2);
            }),
            Err(_) => DEFAULT_PORT,
        };
        let workers = match env::var("WORKERS") {
            Ok(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=256).contains(&n) => n,
                _ => {
                    eprintln!("shop: WORKERS must be a number between 1 and 256");
                    std::process::exit(2);
                }
            },
            Err(_) => DEFAULT_WORKERS,
        };

        let pg = match non_empty_env("DATABASE_URL") {
            None => Err("DATABASE_URL is not set"),
            Some(url) => match url.parse::<postgres::Config>() {
                Ok(mut cfg) => {
                    if cfg.get_connect_timeout().is_none() {
                        cfg.connect_timeout(PG_CONNECT_TIMEOUT);
                    }
                    // When staging recreates the database container (new fixtures), a kept
                    // connection points at an address that no longer answers; without this a
                    // query on it waits for TCP's retransmission timeout (minutes) instead of
                    // failing over to a fresh connection.
                    if cfg.get_tcp_user_timeout().is_none() {
                        cfg.tcp_user_timeout(PG_DEAD_PEER_TIMEOUT);
                    }
                    Ok(cfg)
                }
                Err(_) => Err("DATABASE_URL is not a valid PostgreSQL URL"),
            },
        };
        let redis = match non_empty_env("REDIS_URL") {
            None => Err("REDIS_URL is not set"),
            Some(url) => redis::Client::open(url.as_str()).map_err(|_| "REDIS_URL is not a valid Redis URL"),
        };
        for problem in [pg.as_ref().err(), redis.as_ref().err()].into_iter().flatten() {
            eprintln!("shop: {problem}; /healthz will report 503");
        }

        Config { port, workers, pg, redis, api_key: non_empty_env("API_KEY") }
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

// ---------------------------------------------------------------------------------------------
// Per-worker backend connections
// ---------------------------------------------------------------------------------------------

/// Why a backend call failed.
enum BackendError {
    /// Not configured, unreachable, or the connection broke: the caller answers 503.
    Unavailable(String),
    /// The server answered with an error (the connection is still fine), e.g. a constraint violation.
    Db(postgres::Error),
}

struct Conns<'a> {
    config: &'a Config,
    pg: Option<postgres::Client>,
    redis: Option<redis::Connection>,
}

impl<'a> Conns<'a> {
    fn new(config: &'a Config) -> Self {
        Conns { config, pg: None, redis: None }
    }

    /// Runs `f` on this worker's PostgreSQL client, connecting first if needed. If a reused
    /// connection turns out to be broken (e.g. the database restarted), it is dropped and `f`
    /// is retried once on a fresh connection.
    fn with_pg<T>(&mut self, mut f: impl FnMut(&mut postgres::Client) -> Result<T, postgres::Error>) -> Result<T, BackendError> {
        loop {
            let reused = self.pg.is_some();
            if self.pg.is_none() {
                let cfg = self.config.pg.as_ref().map_err(|e| BackendError::Unavailable((*e).to_string()))?;
                let client = cfg.connect(postgres::NoTls).map_err(|e| BackendError::Unavailable(format!("connect: {}", describe(&e))))?;
                self.pg = Some(client);
            }
            let client = self.pg.as_mut().expect("connected above");
            match f(client) {
                Ok(v) => return Ok(v),
                Err(e) if e.as_db_error().is_some() && !client.is_closed() => return Err(BackendError::Db(e)),
                Err(e) => {
                    self.pg = None;
                    if !reused {
                        return Err(BackendError::Unavailable(describe(&e)));
                    }
                    // A stale connection: retry once on a fresh one.
                }
            }
        }
    }

    /// Like `with_pg`, for Redis. Any error drops the connection.
    fn with_redis<T>(&mut self, mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>) -> Result<T, String> {
        loop {
            let reused = self.redis.is_some();
            if self.redis.is_none() {
                let client = self.config.redis.as_ref().map_err(|e| (*e).to_string())?;
                let con = client.get_connection_with_timeout(REDIS_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
                con.set_read_timeout(Some(REDIS_TIMEOUT)).map_err(|e| e.to_string())?;
                con.set_write_timeout(Some(REDIS_TIMEOUT)).map_err(|e| e.to_string())?;
                self.redis = Some(con);
            }
            match f(self.redis.as_mut().expect("connected above")) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    self.redis = None;
                    if !reused {
                        return Err(e.to_string());
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

struct Reply {
    status: u16,
    body: Value,
    headers: Vec<Header>,
}

impl Reply {
    fn new(status: u16, body: Value) -> Reply {
        Reply { status, body, headers: Vec::new() }
    }
    fn ok(body: Value) -> Reply {
        Reply::new(200, body)
    }
    fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::new(status, json!({ "error": message.into() }))
    }
    fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push(Header::from_bytes(name, value).expect("valid header"));
        self
    }
}

fn worker(server: &Server, config: &Config) {
    let mut conns = Conns::new(config);
    loop {
        let request = match server.recv() {
            Ok(r) => r,
            Err(err) => {
                eprintln!("shop: accept error: {err}");
                continue;
            }
        };
        handle(request, &mut conns);
    }
}

fn handle(mut request: Request, conns: &mut Conns) {
    let started = Instant::now();
    let method = request.method().clone();
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));

    let reply = route(&mut request, &method, path, query, conns);

    let status = reply.status;
    let body = serde_json::to_vec(&reply.body).expect("serialize JSON");
    let mut response = Response::from_data(body)
        .with_status_code(status)
        .with_header(Header::from_bytes("Content-Type", "application/json").expect("valid header"));
    for h in reply.headers {
        response.add_header(h);
    }
    if let Err(err) = request.respond(response) {
        eprintln!("shop: writing response failed: {err}");
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    // One line per request. The query string is left out on purpose.
    println!("{method} {path} {status} {ms:.1}ms");
}

fn route(request: &mut Request, method: &Method, path: &str, query: &str, conns: &mut Conns) -> Reply {
    let get = matches!(method, Method::Get | Method::Head);
    match path {
        "/" if get => Reply::ok(json!({ "service": "shop", "version": VERSION })),
        "/healthz" if get => healthz(conns),
        "/products" if get => list_products(conns),
        "/orders" if *method == Method::Post => match authorize(request, conns.config) {
            Some(denied) => denied,
            None => create_order(request, conns),
        },
        "/slow" if get => slow(query),
        "/stats" if get => stats(conns),
        "/" | "/healthz" | "/products" | "/slow" | "/stats" => method_not_allowed("GET, HEAD"),
        "/orders" => method_not_allowed("POST"),
        _ => match path.strip_prefix("/products/") {
            Some(id) if get => get_product(id, conns),
            Some(_) => method_not_allowed("GET, HEAD"),
            None => Reply::error(404, "not found"),
        },
    }
}

fn method_not_allowed(allow: &str) -> Reply {
    Reply::error(405, "method not allowed").header("Allow", allow)
}

/// `None` when the request may proceed; otherwise the 401 reply.
fn authorize(request: &Request, config: &Config) -> Option<Reply> {
    let key = config.api_key.as_deref()?;
    let presented = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .and_then(|h| h.value.as_str().strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), key.as_bytes()) => None,
        _ => Some(Reply::error(401, "missing or invalid bearer token").header("WWW-Authenticate", "Bearer")),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

fn healthz(conns: &mut Conns) -> Reply {
    let pg = conns.with_pg(|c| c.is_valid(PG_HEALTH_TIMEOUT)).map_err(|e| match e {
        BackendError::Unavailable(msg) => msg,
        BackendError::Db(e) => describe(&e),
    });
    let redis = conns.with_redis(|c| redis::cmd("PING").query::<String>(c));

    let mut failed = Vec::new();
    let mut body = serde_json::Map::new();
    for (name, result) in [("postgres", pg.map(|_| ())), ("redis", redis.map(|_| ()))] {
        match result {
            Ok(()) => {
                body.insert(name.into(), json!("ok"));
            }
            Err(msg) => {
                eprintln!("shop: healthz: {name} unavailable: {msg}");
                body.insert(name.into(), json!("unavailable"));
                failed.push(name);
            }
        }
    }
    if failed.is_empty() {
        Reply::ok(json!({ "status": "ok" }))
    } else {
        body.insert("status".into(), json!("unavailable"));
        body.insert("failed".into(), json!(failed));
        Reply::new(503, Value::Object(body))
    }
}

fn product_json(row: &postgres::Row) -> Value {
    json!({
        "id": row.get::<_, i64>("id"),
        "sku": row.get::<_, Option<String>>("sku"),
        "name": row.get::<_, Option<String>>("name"),
        "price_cents": row.get::<_, Option<i32>>("price_cents"),
    })
}

fn list_products(conns: &mut Conns) -> Reply {
    // Cache read: Redis trouble is not fatal, the database is the source of truth.
    match conns.with_redis(|c| redis::cmd("GET").arg(PRODUCTS_CACHE_KEY).query::<Option<String>>(c)) {
        Ok(Some(cached)) => {
            if let Ok(products @ Value::Array(_)) = serde_json::from_str::<Value>(&cached) {
                return products_reply(products, "hit");
            }
        }
        Ok(None) => {}
        Err(msg) => eprintln!("shop: products cache read skipped: {msg}"),
    }

    let rows = match conns.with_pg(|c| c.query("SELECT id, sku, name, price_cents FROM products ORDER BY id", &[])) {
        Ok(rows) => rows,
        Err(e) => return backend_error(e),
    };
    let products = Value::Array(rows.iter().map(product_json).collect());
    let encoded = products.to_string();
    if let Err(msg) =
        conns.with_redis(|c| redis::cmd("SET").arg(PRODUCTS_CACHE_KEY).arg(&encoded).arg("EX").arg(PRODUCTS_CACHE_TTL_SECS).query::<()>(c))
    {
        eprintln!("shop: products cache write skipped: {msg}");
    }
    products_reply(products, "miss")
}

fn products_reply(products: Value, cache: &str) -> Reply {
    let count = products.as_array().map_or(0, Vec::len);
    Reply::ok(json!({ "products": products, "count": count, "cache": cache }))
}

fn get_product(id: &str, conns: &mut Conns) -> Reply {
    let Ok(id) = id.parse::<i64>() else {
        return Reply::error(404, "product not found");
    };
    match conns.with_pg(|c| c.query_opt("SELECT id, sku, name, price_cents FROM products WHERE id = $1", &[&id])) {
        Ok(Some(row)) => Reply::ok(product_json(&row)),
        Ok(None) => Reply::error(404, "product not found"),
        Err(e) => backend_error(e),
    }
}

fn create_order(request: &mut Request, conns: &mut Conns) -> Reply {
    let mut body = Vec::new();
    if let Err(err) = request.as_reader().take(MAX_BODY_BYTES + 1).read_to_end(&mut body) {
        return Reply::error(400, format!("cannot read body: {err}"));
    }
    if body.len() as u64 > MAX_BODY_BYTES {
        return Reply::error(413, "body too large");
    }
    let input: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(err) => return Reply::error(400, format!("invalid JSON: {err}")),
    };
    let Some(obj) = input.as_object() else {
        return Reply::error(400, "expected a JSON object");
    };
    let product_id = match obj.get("product_id").and_then(Value::as_i64) {
        Some(id) if id > 0 => id,
        _ => return Reply::error(400, "product_id must be a positive integer"),
    };
    let quantity = match obj.get("quantity").and_then(Value::as_i64).map(i32::try_from) {
        Some(Ok(q)) if q > 0 => q,
        _ => return Reply::error(400, "quantity must be a positive integer"),
    };

    let inserted = conns.with_pg(|c| {
        c.query_one(
            "INSERT INTO orders (product_id, quantity) VALUES ($1, $2) \
             RETURNING id, product_id, quantity, \
             to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at",
            &[&product_id, &quantity],
        )
    });
    match inserted {
        Ok(row) => Reply::new(
            201,
            json!({
                "id": row.get::<_, i64>("id"),
                "product_id": row.get::<_, i64>("product_id"),
                "quantity": row.get::<_, i32>("quantity"),
                "created_at": row.get::<_, String>("created_at"),
            }),
        ),
        Err(BackendError::Db(e)) if e.code() == Some(&postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => {
            Reply::error(400, format!("product {product_id} does not exist"))
        }
        Err(BackendError::Db(e)) if e.code() == Some(&postgres::error::SqlState::CHECK_VIOLATION) => {
            Reply::error(400, "order violates a constraint")
        }
        Err(e) => backend_error(e),
    }
}

fn slow(query: &str) -> Reply {
    let raw = query.split('&').filter_map(|pair| pair.split_once('=').or(Some((pair, "")))).find(|(k, _)| *k == "ms").map(|(_, v)| v);
    let requested = match raw {
        None => 0,
        Some(v) => match v.parse::<u64>() {
            Ok(ms) => ms,
            Err(_) => return Reply::error(400, "ms must be a non-negative integer"),
        },
    };
    let ms = requested.min(SLOW_CAP_MS);
    thread::sleep(Duration::from_millis(ms));
    Reply::ok(json!({ "slept_ms": ms }))
}

fn stats(conns: &mut Conns) -> Reply {
    match conns.with_pg(|c| c.query_one("SELECT (SELECT count(*) FROM products) AS products, (SELECT count(*) FROM orders) AS orders", &[]))
    {
        Ok(row) => Reply::ok(json!({
            "products": row.get::<_, i64>("products"),
            "orders": row.get::<_, i64>("orders"),
        })),
        Err(e) => backend_error(e),
    }
}

/// An error with its causes, e.g. "error connecting to server: Connection refused (os error 111)".
/// For server errors, the server's message (severity, text, detail) instead of just "db error".
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.to_string();
    }
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn backend_error(e: BackendError) -> Reply {
    match e {
        BackendError::Unavailable(msg) => {
            eprintln!("shop: database unavailable: {msg}");
            Reply::error(503, "database unavailable")
        }
        BackendError::Db(e) => {
            eprintln!("shop: database error: {}", describe(&e));
            if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) {
                Reply::error(503, "database schema missing (migrations not applied?)")
            } else {
                Reply::error(500, "database error")
            }
        }
    }
}
