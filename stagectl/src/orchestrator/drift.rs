//! `stagectl diff`: what the manifest wants now, resolved without changing anything (no pull,
//! no build, no host command), against the containers that run. The comparison itself is
//! `plan::drift`, pure.

use std::collections::BTreeMap;

use super::fixtures::{fixture_inputs, mounted_content, Mounts};
use super::{images, Orchestrator};
use crate::docker::ContainerEngine;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::plan::{self, drift};

impl<E: ContainerEngine + ?Sized> Orchestrator<E> {
    /// Per service: unchanged, would be created, started, recreated (with the fields that
    /// changed) or removed.
    pub async fn drift(&self, manifest: &Manifest) -> Result<drift::DriftReport> {
        let observed = self.docker.list_containers(&manifest.stack).await?;
        // `auto` host ports as this project has them (no allocation: diff changes nothing).
        let manifest = &super::ports::peek(manifest, &observed);
        let secrets = manifest.secret_values();
        let failed = |service: &str, e: &dyn std::fmt::Display| Error::StackFailed(format!("diff: service `{service}`: {e}"));
        let mut image_ids: BTreeMap<&str, std::result::Result<String, String>> = BTreeMap::new();
        for s in &manifest.services {
            let id = images::current_image(self.docker.as_ref(), s).await.map_err(|e| failed(&s.name, &e))?;
            image_ids.insert(&s.name, id);
        }
        let mut desired = Vec::new();
        for s in &manifest.services {
            let stack = &manifest.stack;
            let (image_id, mut note) = match &image_ids[s.name.as_str()] {
                Ok(id) => (id.clone(), None),
                Err(note) => ("(unknown)".to_string(), Some(note.clone())),
            };
            let mut hash = plan::spec_hash(stack, s, &image_id);
            let mut inputs = None;
            if s.job {
                if let Some(content) = mounted_content(s, Mounts::ReadOnly).map_err(|e| failed(&s.name, &e))? {
                    hash = plan::combine_hash(&hash, &content);
                    inputs = Some(content);
                }
            }
            if let Some(f) = manifest.fixtures_for(&s.name) {
                let mut jobs = BTreeMap::new();
                for job in &f.after {
                    match image_ids.get(job.as_str()) {
                        Some(Ok(id)) => {
                            jobs.insert(job.clone(), id.clone());
                        }
                        _ => note = note.or(Some(format!("fixture inputs unknown: the image of job `{job}` would be built or pulled"))),
                    }
                }
                // As `up` keys it: the manifest's `[stack] name`, not the project.
                let snapshot_hash = plan::snapshot_spec_hash(manifest, s, &image_id);
                let key = fixture_inputs(manifest, f, &image_id, &snapshot_hash, &jobs).map_err(|e| failed(&s.name, &e))?.key;
                hash = plan::combine_hash(&hash, &key);
                inputs = Some(key);
            }
            desired.push(drift::Desired {
                service: s.name.clone(),
                hash: note.is_none().then_some(hash),
                fields: drift::spec_fields(stack, s, &image_id, inputs, &secrets),
                image_note: note,
            });
        }
        Ok(drift::compare(manifest, &desired, &observed))
    }
}
