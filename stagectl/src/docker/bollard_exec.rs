//! Commands in containers for [`BollardEngine`]: `exec` with or without stdin, and the exit
//! code once the output ended.

use std::time::Duration;

use futures_util::StreamExt;

use super::bollard_engine::{log_line, lost_or, EXEC_EXIT_WAIT};
use super::{BollardEngine, ByteStream};
use crate::error::{Error, Result};

impl BollardEngine {
    pub(super) async fn run_exec(
        &self,
        id: &str,
        user: Option<&str>,
        command: &[String],
        input: Option<ByteStream>,
    ) -> Result<(i64, String)> {
        use tokio::io::AsyncWriteExt;
        let cfg = bollard::models::ExecConfig {
            user: user.map(str::to_string),
            attach_stdin: Some(input.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(command.to_vec()),
            ..Default::default()
        };
        let ctx = || format!("exec in {id}");
        let created = self.docker.create_exec(id, cfg).await.map_err(|e| lost_or(&self.host, ctx(), e))?;
        let mut output = String::new();
        if let bollard::exec::StartExecResults::Attached { output: mut out, input: mut stdin } =
            self.docker.start_exec(&created.id, None).await.map_err(|e| lost_or(&self.host, ctx(), e))?
        {
            // Feed stdin while draining stdout/stderr, so neither side can block the other.
            let feed = async {
                let mut failure = None;
                if let Some(mut input) = input {
                    while let Some(chunk) = input.next().await {
                        let chunk = match chunk {
                            Ok(c) => c,
                            Err(e) => {
                                failure = Some(Error::StackFailed(e.to_string()));
                                break;
                            }
                        };
                        if let Err(e) = stdin.write_all(&chunk).await {
                            // The command exited early (e.g. on an SQL error): its output says why.
                            tracing::debug!("exec stdin closed: {e}");
                            break;
                        }
                    }
                    // Always close stdin, also after a failure: the command waits for EOF.
                    let _ = stdin.shutdown().await;
                }
                match failure {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            };
            let drain = async {
                while let Some(chunk) = out.next().await {
                    output.push_str(&log_line(chunk.map_err(|e| lost_or(&self.host, ctx(), e))?));
                }
                Ok::<(), Error>(())
            };
            let (fed, drained) = tokio::join!(feed, drain);
            fed?;
            drained?;
        }
        self.exec_exit_code(id, &created.id, command, output).await
    }

    /// The exit code of exec `exec_id` in container `id` once its output ended. The output
    /// ends when the command closes it, normally as it exits; the engine may take a moment to
    /// record the exit. A stream that ended while the command goes on (a connection cut short
    /// by a proxy) gives no exit code: that is an error, not "-1".
    pub(super) async fn exec_exit_code(&self, id: &str, exec_id: &str, command: &[String], output: String) -> Result<(i64, String)> {
        let ctx = || format!("exec in {id}");
        let deadline = tokio::time::Instant::now() + EXEC_EXIT_WAIT;
        loop {
            let inspect = self.docker.inspect_exec(exec_id).await.map_err(|e| lost_or(&self.host, ctx(), e))?;
            match (inspect.running, inspect.exit_code) {
                (Some(false) | None, Some(code)) => return Ok((code, output)),
                _ if tokio::time::Instant::now() >= deadline => {
                    let last = output.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
                    return Err(Error::docker(
                        ctx(),
                        format!(
                            "the output of `{}` ended before the command did (exit code unknown){}",
                            command.first().map(String::as_str).unwrap_or(""),
                            if last.is_empty() { String::new() } else { format!("; its last line: {last}") }
                        ),
                    ));
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}
