//! Host metrics for the status page and `/metrics`: CPU, memory, and the disk Docker writes to.

use std::path::Path;

use serde::Serialize;
use sysinfo::{CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, RefreshKind, System};

/// Where Docker keeps images and containers: the disk that fills up first on a staging host.
const DOCKER_DATA_DIR: &str = "/var/lib/docker";

/// One sample of the host's state.
#[derive(Serialize, serde::Deserialize, Clone, Debug, Default)]
pub struct HostMetrics {
    /// Global CPU usage, 0-100, averaged since the previous sample.
    pub cpu_percent: f32,
    pub cpus: usize,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// Mount point of the disk reported below.
    pub disk_path: String,
    /// Total minus available, i.e. including blocks reserved for root.
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub load_average_1m: f64,
}

/// Keeps the `sysinfo` state between samples: CPU usage is a difference between two refreshes,
/// so the sampler must live as long as the thread that calls [`HostSampler::sample`].
pub struct HostSampler {
    system: System,
    disks: Disks,
}

impl HostSampler {
    pub fn new() -> Self {
        // Only CPU usage and memory: processes, users and the rest cost time and are not shown.
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_cpu_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        Self { system, disks: Disks::new() }
    }

    /// Refreshes and returns the current values. The first call's CPU figure covers only the
    /// time since [`HostSampler::new`]; later calls cover the interval since the previous one.
    pub fn sample(&mut self) -> HostMetrics {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        // Re-read the mount list each time (a disk may be mounted later), space only.
        self.disks.refresh_specifics(true, DiskRefreshKind::nothing().with_storage());

        let mounts: Vec<(&Path, u64, u64)> =
            self.disks.list().iter().map(|d| (d.mount_point(), d.total_space(), d.available_space())).collect();
        let (disk_path, disk_total_bytes, disk_available) = match pick_disk(&mounts, Path::new(DOCKER_DATA_DIR)) {
            Some((path, total, available)) => (path.display().to_string(), total, available),
            None => ("/".to_string(), 0, 0),
        };

        HostMetrics {
            cpu_percent: self.system.global_cpu_usage().clamp(0.0, 100.0),
            cpus: self.system.cpus().len(),
            memory_used_bytes: self.system.used_memory(),
            memory_total_bytes: self.system.total_memory(),
            // total − free (statvfs f_bfree) is what `df` calls used; total − available would
            // count the root-reserved blocks as used.
            disk_used_bytes: disk_total_bytes.saturating_sub(fs4::free_space(&disk_path).unwrap_or(disk_available)),
            disk_total_bytes,
            disk_path,
            load_average_1m: System::load_average().one,
        }
    }
}

impl Default for HostSampler {
    fn default() -> Self {
        Self::new()
    }
}

/// The mount whose point is the longest (component-wise) prefix of `target`; `/` is a prefix of
/// every absolute path, so it is the natural fallback. Mounts reporting no size (pseudo file
/// systems) are skipped.
fn pick_disk<'a>(mounts: &[(&'a Path, u64, u64)], target: &Path) -> Option<(&'a Path, u64, u64)> {
    mounts
        .iter()
        .filter(|(point, total, _)| *total > 0 && target.starts_with(point))
        .max_by_key(|(point, _, _)| point.components().count())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_longest_mount_prefix() {
        let mounts = [
            (Path::new("/"), 100, 50),
            (Path::new("/var"), 200, 20),
            (Path::new("/var/lib/docker-old"), 300, 30),
            (Path::new("/var/lib/docker"), 0, 0), // no size: pseudo file system
        ];
        let (path, total, _) = pick_disk(&mounts, Path::new(DOCKER_DATA_DIR)).unwrap();
        assert_eq!(path, Path::new("/var"));
        assert_eq!(total, 200);
        assert_eq!(pick_disk(&mounts[..1], Path::new("/srv")).unwrap().0, Path::new("/"));
        assert!(pick_disk(&[], Path::new("/")).is_none());
    }

    #[test]
    fn sample_values_are_plausible() {
        let mut sampler = HostSampler::new();
        sampler.sample();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let m = sampler.sample();
        assert!(m.memory_total_bytes > 0, "{m:?}");
        assert!(m.memory_used_bytes <= m.memory_total_bytes, "{m:?}");
        assert!(m.disk_total_bytes > 0, "{m:?}");
        assert!(m.disk_used_bytes <= m.disk_total_bytes, "{m:?}");
        assert!(m.disk_path.starts_with('/'), "{m:?}");
        assert!((0.0..=100.0).contains(&m.cpu_percent), "{m:?}");
        assert!(m.cpus > 0, "{m:?}");
        assert!(m.load_average_1m >= 0.0, "{m:?}");
    }
}
