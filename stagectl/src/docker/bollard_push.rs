//! `snapshots push` for [`BollardEngine`]: an image pushed to the registry its reference names.

use std::collections::HashMap;

use futures_util::StreamExt;

use super::bollard_engine::{lost_or, split_reference};
use super::{BollardEngine, ImageProgress};
use crate::error::{Error, Result};

impl BollardEngine {
    /// Pushes `reference` (`registry/repo:tag`). No credentials are sent: a registry that
    /// needs a login refuses, and nothing secret can reach a message.
    pub(super) async fn push_to_registry(&self, reference: &str, progress: &(dyn Fn(ImageProgress) + Send + Sync)) -> Result<()> {
        let (name, tag) = split_reference(reference);
        let opts = bollard::query_parameters::PushImageOptionsBuilder::new().tag(tag).build();
        let ctx = || format!("pushing {reference}");
        let mut stream = self.docker.push_image(name, Some(opts), None);
        // Docker reports each layer's bytes under its status line; the sum is the image's.
        let mut layers: HashMap<String, (u64, u64)> = HashMap::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| lost_or(&self.host, ctx(), e))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(Error::docker(ctx(), err));
            }
            match info.progress_detail {
                Some(pd) if pd.total.unwrap_or(0) > 0 => {
                    let layer = format!("{}-{}", info.status.unwrap_or_default(), pd.total.unwrap_or(0));
                    layers.insert(layer, (pd.current.unwrap_or(0) as u64, pd.total.unwrap_or(0) as u64));
                    let (current, total) = layers.values().fold((0, 0), |(c, t), (lc, lt)| (c + lc, t + lt));
                    progress(ImageProgress::Bytes { current, total });
                }
                _ => {
                    if let Some(status) = info.status {
                        progress(ImageProgress::Line(status));
                    }
                }
            }
        }
        Ok(())
    }
}
