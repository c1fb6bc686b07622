//! PostgreSQL side of native migrations, over a direct connection to the container's address
//! on the stack network (tokio-postgres): the history table, applying and reverting files with
//! exact durations and `file:line` errors, and the lock probe.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use super::{line_of_position, needs_no_transaction, AppliedMigration, MigrationError, MigrationFile, SqlError};

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    pub password: Option<String>,
}

const HISTORY_TABLE: &str = "CREATE TABLE IF NOT EXISTS stagectl_migrations (
    version text PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    duration_ms double precision NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

pub async fn connect(target: &Target) -> Result<Client, MigrationError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&target.host)
        .port(target.port)
        .user(&target.user)
        .dbname(&target.database)
        .application_name("stagectl")
        .connect_timeout(Duration::from_secs(5));
    if let Some(p) = &target.password {
        config.password(p);
    }
    let (client, connection) = config.connect(NoTls).await.map_err(|source| MigrationError::Connect {
        host: target.host.clone(),
        port: target.port,
        database: target.database.clone(),
        user: target.user.clone(),
        source,
    })?;
    tokio::spawn(async move {
        // Ends when the client is dropped; an error here surfaces on the client's next call.
        let _ = connection.await;
    });
    Ok(client)
}

/// Applied migrations in version order; empty when the history table does not exist yet.
pub async fn applied(client: &Client) -> Result<Vec<AppliedMigration>, MigrationError> {
    let exists =
        client.query_one("SELECT to_regclass('stagectl_migrations') IS NOT NULL", &[]).await.map_err(MigrationError::ReadHistory)?;
    if !exists.get::<_, bool>(0) {
        return Ok(vec![]);
    }
    let rows = client
        .query("SELECT version, name, checksum, duration_ms FROM stagectl_migrations ORDER BY version::numeric, name", &[])
        .await
        .map_err(MigrationError::ReadHistory)?;
    Ok(rows.iter().map(|r| AppliedMigration { version: r.get(0), name: r.get(1), checksum: r.get(2), duration_ms: r.get(3) }).collect())
}

/// Runs `file`'s up migration and records it; returns the time the SQL took, in ms.
/// In a transaction unless the file needs none (CREATE INDEX CONCURRENTLY): then statement by
/// statement, and a failure leaves the earlier statements applied, as it would in production.
pub async fn apply(client: &mut Client, file: &MigrationFile, display: &str) -> Result<f64, MigrationError> {
    client.batch_execute(HISTORY_TABLE).await.map_err(MigrationError::CreateHistory)?;
    let record_error = |source| MigrationError::Record { file: display.to_string(), source };
    let started = Instant::now();
    let record = "INSERT INTO stagectl_migrations (version, name, checksum, duration_ms) VALUES ($1, $2, $3, $4)";
    if needs_no_transaction(&file.up_sql) {
        run_statements(client, &file.up_sql, display).await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        client.execute(record, &[&file.version, &file.name, &file.checksum, &ms]).await.map_err(record_error)?;
        return Ok(ms);
    }
    let tx = client.transaction().await.map_err(|source| MigrationError::Postgres { file: display.to_string(), source })?;
    tx.batch_execute(&file.up_sql).await.map_err(|e| describe(display, &file.up_sql, 1, e))?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    tx.execute(record, &[&file.version, &file.name, &file.checksum, &ms]).await.map_err(record_error)?;
    tx.commit().await.map_err(|e| describe(display, &file.up_sql, 1, e))?;
    Ok(ms)
}

/// Runs `file`'s down migration and removes its history row; returns ms.
pub async fn revert(client: &mut Client, file: &MigrationFile, down_sql: &str, display: &str) -> Result<f64, MigrationError> {
    let started = Instant::now();
    let postgres_error = |source| MigrationError::Postgres { file: display.to_string(), source };
    let forget = "DELETE FROM stagectl_migrations WHERE version = $1";
    if needs_no_transaction(down_sql) {
        run_statements(client, down_sql, display).await?;
        client.execute(forget, &[&file.version]).await.map_err(postgres_error)?;
        return Ok(started.elapsed().as_secs_f64() * 1000.0);
    }
    let tx = client.transaction().await.map_err(postgres_error)?;
    tx.batch_execute(down_sql).await.map_err(|e| describe(display, down_sql, 1, e))?;
    tx.execute(forget, &[&file.version]).await.map_err(postgres_error)?;
    tx.commit().await.map_err(|e| describe(display, down_sql, 1, e))?;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

async fn run_statements(client: &Client, sql: &str, display: &str) -> Result<(), MigrationError> {
    for (line, stmt) in crate::sql::split_statements(sql) {
        client.batch_execute(&stmt).await.map_err(|e| describe(display, &stmt, line, e))?;
    }
    Ok(())
}

/// `file:line: ERROR: message` (+ detail and hint) for a failed statement; `first_line` is the
/// file line the sent text starts on.
fn describe(display: &str, sent: &str, first_line: usize, e: tokio_postgres::Error) -> MigrationError {
    let Some(db) = e.as_db_error() else { return MigrationError::Postgres { file: display.to_string(), source: e } };
    let line = match db.position() {
        Some(tokio_postgres::error::ErrorPosition::Original(p)) => first_line + line_of_position(sent, *p as usize) - 1,
        _ => first_line,
    };
    MigrationError::Sql(Box::new(SqlError {
        file: display.to_string(),
        line,
        severity: db.severity().to_string(),
        message: db.message().to_string(),
        detail: db.detail().map(str::to_string),
        hint: db.hint().map(str::to_string),
    }))
}

/// A user table a migration touches, with a column the probe can write to itself.
#[derive(Debug, Clone)]
pub struct ProbedTable {
    /// `"schema"."table"`, quoted.
    pub qualified: String,
    /// `schema.table` as shown in reports.
    pub display: String,
    pub writable_column: Option<String>,
}

/// Existing user tables among the identifiers of `sql` (stagectl's own table excluded).
pub async fn touched_tables(client: &Client, sql: &str) -> Result<Vec<ProbedTable>, MigrationError> {
    let ids: Vec<String> = crate::sql::identifiers(sql).into_iter().collect();
    let rows = client
        .query(
            "SELECT t.table_schema, t.table_name,
                    (SELECT c.column_name FROM information_schema.columns c
                      WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name
                        AND c.is_generated = 'NEVER' AND coalesce(c.identity_generation, '') <> 'ALWAYS'
                      ORDER BY c.ordinal_position LIMIT 1)
               FROM information_schema.tables t
              WHERE t.table_type = 'BASE TABLE'
                AND t.table_schema NOT IN ('pg_catalog', 'information_schema')
                AND t.table_name <> 'stagectl_migrations'
                AND t.table_name = ANY($1)
              ORDER BY 1, 2",
            &[&ids],
        )
        .await
        .map_err(MigrationError::ListTables)?;
    Ok(rows
        .iter()
        .map(|r| {
            let (schema, table): (String, String) = (r.get(0), r.get(1));
            ProbedTable {
                qualified: format!("{}.{}", quote(&schema), quote(&table)),
                display: format!("{schema}.{table}"),
                writable_column: r.get(2),
            }
        })
        .collect())
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// What the probe saw while a migration ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeStats {
    /// Longest time one read-and-write of a table took, ms.
    pub longest_block_ms: f64,
    /// The table of that longest probe.
    pub table: Option<String>,
    pub probes: u64,
}

/// A second session that reads and writes each touched table in a loop while a migration
/// runs: a SELECT, then an UPDATE of one row to itself (or, for a table without a writable
/// column, the ROW EXCLUSIVE lock every write takes), rolled back. A probe that waits measures
/// how long the application's queries would have waited.
pub struct LockProbe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<ProbeStats>,
}

/// Pause between probe rounds: often enough to catch a lock held for a fraction of the budget.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);

impl LockProbe {
    pub async fn start(target: &Target, tables: Vec<ProbedTable>) -> Result<LockProbe, MigrationError> {
        let client = connect(target).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut stats = ProbeStats::default();
            let mut live = tables;
            while !live.is_empty() {
                let mut gone = Vec::new();
                for (i, t) in live.iter().enumerate() {
                    let write = match &t.writable_column {
                        Some(c) => format!("UPDATE {0} SET {1} = {1} WHERE ctid = (SELECT ctid FROM {0} LIMIT 1)", t.qualified, quote(c)),
                        None => format!("LOCK TABLE {} IN ROW EXCLUSIVE MODE", t.qualified),
                    };
                    let sql = format!("BEGIN; SELECT * FROM {} LIMIT 1; {write}; ROLLBACK", t.qualified);
                    let started = Instant::now();
                    let result = client.batch_execute(&sql).await;
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    stats.probes += 1;
                    if ms > stats.longest_block_ms {
                        stats.longest_block_ms = ms;
                        stats.table = Some(t.display.clone());
                    }
                    if result.is_err() {
                        // Dropped or renamed by the migration: nothing left to wait on.
                        let _ = client.batch_execute("ROLLBACK").await;
                        gone.push(i);
                    }
                }
                for i in gone.into_iter().rev() {
                    live.remove(i);
                }
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
            stats
        });
        Ok(LockProbe { stop, task })
    }

    pub async fn finish(self) -> ProbeStats {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}
