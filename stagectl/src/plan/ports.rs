//! Host ports for `"auto:PORT"` mappings: stable for a project and service, never a port that
//! another container or project holds. Pure: the caller says what is taken, what is reserved,
//! and whether a port can be bound on the host now.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

/// One `auto` mapping to allocate, with what is known about it already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// `service/container_port/protocol`, the mapping's name in the reservations.
    pub key: String,
    /// The host port the project's running container publishes for it: kept as it is.
    pub current: Option<u16>,
    /// The port this project was given last time (kept across `down` and `up` when still free).
    pub reserved: Option<u16>,
}

/// The mapping's key in the reservations: `service/container_port/protocol`.
pub fn key(service: &str, container_port: u16, protocol: &str) -> String {
    format!("{service}/{container_port}/{protocol}")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no free host port in {first}-{last} for `{key}` (auto): every port in the range is held by a container, another project, or another program")]
pub struct RangeExhausted {
    pub key: String,
    pub first: u16,
    pub last: u16,
}

/// A port for each wanted mapping, in order. `taken`: ports published by any container or
/// reserved by another project. `bindable`: whether the host lets us bind the port now.
/// A new mapping starts its search at a point derived from the project and the key, so
/// projects allocating at once rarely probe the same ports, and one project gets the same
/// port again after its reservation was lost.
pub fn allocate(
    project: &str,
    wanted: &[Wanted],
    (first, last): (u16, u16),
    taken: &BTreeSet<u16>,
    bindable: &mut dyn FnMut(u16) -> bool,
) -> Result<BTreeMap<String, u16>, RangeExhausted> {
    let mut given: BTreeMap<String, u16> = BTreeMap::new();
    let size = u32::from(last.saturating_sub(first)) + 1;
    for w in wanted {
        let in_use = |p: u16, given: &BTreeMap<String, u16>| given.values().any(|&g| g == p);
        if let Some(p) = w.current.filter(|p| !in_use(*p, &given)) {
            given.insert(w.key.clone(), p);
            continue;
        }
        let usable = |p: u16, given: &BTreeMap<String, u16>, bindable: &mut dyn FnMut(u16) -> bool| {
            (first..=last).contains(&p) && !taken.contains(&p) && !in_use(p, given) && bindable(p)
        };
        if let Some(p) = w.reserved.filter(|&p| usable(p, &given, bindable)) {
            given.insert(w.key.clone(), p);
            continue;
        }
        let start = start_offset(project, &w.key, size);
        let found = (0..size).map(|i| first + ((start + i) % size) as u16).find(|&p| usable(p, &given, bindable));
        match found {
            Some(p) => {
                given.insert(w.key.clone(), p);
            }
            None => return Err(RangeExhausted { key: w.key.clone(), first, last }),
        }
    }
    Ok(given)
}

fn start_offset(project: &str, key: &str, size: u32) -> u32 {
    let digest = Sha256::digest(format!("{project}\0{key}").as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % size
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(key: &str) -> Wanted {
        Wanted { key: key.into(), current: None, reserved: None }
    }

    #[test]
    fn a_new_mapping_gets_the_same_port_every_time_and_within_the_range() {
        let a = allocate("shop", &[want("app/8080/tcp")], (20000, 20999), &BTreeSet::new(), &mut |_| true).unwrap();
        let b = allocate("shop", &[want("app/8080/tcp")], (20000, 20999), &BTreeSet::new(), &mut |_| true).unwrap();
        assert_eq!(a, b);
        assert!((20000..=20999).contains(&a["app/8080/tcp"]));
    }

    #[test]
    fn taken_unbindable_and_already_given_ports_are_skipped() {
        // A range of three: one taken by another project, one the host refuses.
        let taken = BTreeSet::from([30001]);
        let got = allocate("p", &[want("a/1/tcp"), want("b/1/tcp")], (30000, 30002), &taken, &mut |p| p != 30000);
        assert_eq!(got, Err(RangeExhausted { key: "b/1/tcp".into(), first: 30000, last: 30002 }));
        let got = allocate("p", &[want("a/1/tcp")], (30000, 30002), &taken, &mut |p| p != 30000).unwrap();
        assert_eq!(got["a/1/tcp"], 30002);
    }

    #[test]
    fn the_running_containers_port_is_kept_and_a_reservation_reused_when_free() {
        let wanted = [
            Wanted { key: "app/80/tcp".into(), current: Some(20500), reserved: Some(20400) },
            Wanted { key: "api/80/tcp".into(), current: None, reserved: Some(20401) },
            Wanted { key: "web/80/tcp".into(), current: None, reserved: Some(20402) },
        ];
        // The container's own port counts as taken (it publishes it) but is kept; 20402 is
        // now someone else's.
        let taken = BTreeSet::from([20500, 20402]);
        let got = allocate("p", &wanted, (20000, 20999), &taken, &mut |_| true).unwrap();
        assert_eq!(got["app/80/tcp"], 20500);
        assert_eq!(got["api/80/tcp"], 20401);
        assert_ne!(got["web/80/tcp"], 20402);
        assert!(!taken.contains(&got["web/80/tcp"]));
    }

    #[test]
    fn two_projects_never_share_a_port_when_the_first_is_reserved() {
        let first = allocate("branch-a", &[want("app/8080/tcp")], (20000, 20001), &BTreeSet::new(), &mut |_| true).unwrap();
        let taken: BTreeSet<u16> = first.values().copied().collect();
        let second = allocate("branch-b", &[want("app/8080/tcp")], (20000, 20001), &taken, &mut |_| true).unwrap();
        assert_ne!(first["app/8080/tcp"], second["app/8080/tcp"]);
    }

    #[test]
    fn a_one_port_range_and_the_top_of_the_port_space_do_not_overflow() {
        let got = allocate("p", &[want("a/1/tcp")], (65535, 65535), &BTreeSet::new(), &mut |_| true).unwrap();
        assert_eq!(got["a/1/tcp"], 65535);
    }
}
