//! The archive half of [`BollardEngine`]: a command's tar output extracted straight into
//! another container (Docker's `PUT /containers/{id}/archive`), and what an image declares as
//! volumes.

use std::sync::{Arc, Mutex};

use bollard::container::LogOutput;
use bollard::query_parameters::UploadToContainerOptionsBuilder;
use futures_util::StreamExt;

use super::bollard_engine::{is_not_found, lost_or};
use super::{BollardEngine, ExecAs};
use crate::error::Result;

impl BollardEngine {
    pub(super) async fn upload(&self, to: &str, to_dir: &str, tar: Vec<u8>) -> Result<()> {
        let upload = UploadToContainerOptionsBuilder::new().path(to_dir).build();
        let body = bollard::body_full(tar.into());
        self.docker
            .upload_to_container(to, Some(upload), body)
            .await
            .map_err(|e| lost_or(&self.host, format!("extracting into {to_dir} of {to}"), e))
    }

    /// Streams the tar of `from_path` in `from` into `to_dir` of `to`: a failed read fails the
    /// upload, so a cut copy is an error.
    pub(super) async fn copy_archive(&self, from: &str, from_path: &str, to: &str, to_dir: &str) -> Result<()> {
        let download = bollard::query_parameters::DownloadFromContainerOptionsBuilder::new().path(from_path).build();
        let stream = self.docker.download_from_container(from, Some(download)).map(|chunk| chunk.map_err(std::io::Error::other));
        let upload = UploadToContainerOptionsBuilder::new().path(to_dir).build();
        self.docker
            .upload_to_container(to, Some(upload), bollard::body_try_stream(stream))
            .await
            .map_err(|e| lost_or(&self.host, format!("copying {from_path} of {from} into {to_dir} of {to}"), e))
    }

    /// The command's stdout becomes the upload's body as it comes; its stderr is kept for the
    /// caller. The upload ends when the output does, normally as the command exits.
    pub(super) async fn exec_into_container(&self, from: ExecAs<'_>, command: &[String], to: &str, to_dir: &str) -> Result<(i64, String)> {
        let cfg = bollard::models::ExecConfig {
            user: Some(from.user.to_string()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(command.to_vec()),
            ..Default::default()
        };
        let ctx = || format!("exec in {}", from.container);
        let created = self.docker.create_exec(from.container, cfg).await.map_err(|e| lost_or(&self.host, ctx(), e))?;
        let started = self.docker.start_exec(&created.id, None).await.map_err(|e| lost_or(&self.host, ctx(), e))?;
        let bollard::exec::StartExecResults::Attached { output, .. } = started else {
            return Err(crate::error::Error::docker(ctx(), "the exec was detached"));
        };
        let stderr = Arc::new(Mutex::new(String::new()));
        let errors = stderr.clone();
        let body = output.filter_map(move |chunk| {
            let item = match chunk {
                Ok(LogOutput::StdOut { message }) => Some(Ok(message)),
                Ok(LogOutput::StdErr { message }) => {
                    if let Ok(mut e) = errors.lock() {
                        e.push_str(&String::from_utf8_lossy(&message));
                    }
                    None
                }
                Ok(_) => None,
                Err(e) => Some(Err(std::io::Error::other(e))),
            };
            std::future::ready(item)
        });
        let upload = UploadToContainerOptionsBuilder::new().path(to_dir).build();
        let uploaded = self
            .docker
            .upload_to_container(to, Some(upload), bollard::body_try_stream(body))
            .await
            .map_err(|e| lost_or(&self.host, format!("extracting into {to_dir} of {to}"), e));
        let errors = stderr.lock().map(|e| e.clone()).unwrap_or_default();
        let (code, errors) = self.exec_exit_code(from.container, &created.id, command, errors).await?;
        // A failed command explains a failed upload better than the upload's own error.
        if code == 0 {
            uploaded?;
        }
        Ok((code, errors))
    }

    pub(super) async fn declared_volumes(&self, reference: &str) -> Result<Vec<String>> {
        match self.docker.inspect_image(reference).await {
            Ok(info) => Ok(info.config.and_then(|c| c.volumes).unwrap_or_default()),
            Err(e) if is_not_found(&e) => Ok(vec![]),
            Err(e) => Err(lost_or(&self.host, format!("inspecting image {reference}"), e)),
        }
    }
}
