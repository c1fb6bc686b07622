//! `docker save` into a file and `docker load` from one, for `snapshots export` / `import`.

use super::*;

/// `snapshots export` / `snapshots import`: `docker save` into a file and `docker load` from
/// one, both streamed in chunks (a snapshot archive may be gigabytes).
impl BollardEngine {
    pub(super) async fn save_to_file(&self, references: &[String], path: &std::path::Path) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let ctx = || format!("saving {} to {}", references.join(", "), path.display());
        let file_err = |e: std::io::Error| Error::docker(ctx(), e);
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = std::path::PathBuf::from(partial);
        let names: Vec<&str> = references.iter().map(String::as_str).collect();
        let written = async {
            let mut file = tokio::fs::File::create(&partial).await.map_err(file_err)?;
            let mut stream = self.docker.export_images(&names);
            let mut bytes = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| lost_or(&self.host, ctx(), e))?;
                bytes += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(file_err)?;
            }
            file.flush().await.map_err(file_err)?;
            file.sync_all().await.map_err(file_err)?;
            Ok::<u64, Error>(bytes)
        }
        .await;
        match written {
            Ok(bytes) => {
                tokio::fs::rename(&partial, path).await.map_err(file_err)?;
                Ok(bytes)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                Err(e)
            }
        }
    }

    pub(super) async fn load_from_file(&self, path: &std::path::Path) -> Result<Vec<String>> {
        let ctx = || format!("loading {}", path.display());
        let file = tokio::fs::File::open(path).await.map_err(|e| Error::docker(ctx(), e))?;
        let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
        let opts = bollard::query_parameters::ImportImageOptionsBuilder::new().quiet(true).build();
        let mut stream = self.docker.import_image_stream(opts, body, None);
        let mut loaded = Vec::new();
        while let Some(info) = stream.next().await {
            let info = info.map_err(|e| lost_or(&self.host, ctx(), e))?;
            for line in info.stream.as_deref().unwrap_or_default().lines() {
                if let Some(id) = line.trim().strip_prefix("Loaded image ID: ") {
                    loaded.push(id.trim().to_string());
                } else if let Some(reference) = line.trim().strip_prefix("Loaded image: ") {
                    loaded.push(podman::familiar_name(reference.trim(), self.podman));
                }
            }
        }
        Ok(loaded)
    }
}
