//! Unit tests of the pure helpers the section readers share; whole manifests are tested in
//! `manifest/tests.rs` and the `tests/corpus` cases.

use std::path::{Path, PathBuf};

use super::cx::{is_dns_label, suggest_label};
use super::fixtures::is_table_column;
use super::service::{image_reference_hint, parse_port_mapping, parse_volume, PortMappingError, VolumeError};
use crate::manifest::{PortMapping, Protocol, VolumeMount, VolumeSource};

fn mapping(host_ip: Option<&str>, host_port: Option<u16>, container_port: u16, protocol: Protocol) -> PortMapping {
    PortMapping { host_ip: host_ip.map(str::to_string), host_port, container_port, protocol, auto: false }
}

#[test]
fn port_mappings_parse_in_every_form() {
    assert_eq!(parse_port_mapping("80"), Ok(mapping(None, None, 80, Protocol::Tcp)));
    assert_eq!(parse_port_mapping("8080:80"), Ok(mapping(None, Some(8080), 80, Protocol::Tcp)));
    assert_eq!(parse_port_mapping("127.0.0.1:53:53/udp"), Ok(mapping(Some("127.0.0.1"), Some(53), 53, Protocol::Udp)));
    assert_eq!(parse_port_mapping("[::1]:81:81/tcp"), Ok(mapping(Some("::1"), Some(81), 81, Protocol::Tcp)));
}

#[test]
fn auto_host_ports_parse_with_and_without_an_address() {
    let auto = |ip: Option<&str>, c: u16, protocol| PortMapping { auto: true, ..mapping(ip, None, c, protocol) };
    assert_eq!(parse_port_mapping("auto:8080"), Ok(auto(None, 8080, Protocol::Tcp)));
    assert_eq!(parse_port_mapping("127.0.0.1:auto:53/udp"), Ok(auto(Some("127.0.0.1"), 53, Protocol::Udp)));
    // `auto` is a host port only: a container port must be a number.
    assert_eq!(parse_port_mapping("8080:auto"), Err(PortMappingError::NotAPort("auto".into())));
    assert_eq!(parse_port_mapping("auto"), Err(PortMappingError::NotAPort("auto".into())));
}

#[test]
fn port_ranges_are_unprivileged_and_ordered() {
    use super::stack::parse_port_range;
    assert_eq!(parse_port_range("20000-20999"), Some((20000, 20999)));
    assert_eq!(parse_port_range(" 8000 - 8000 "), Some((8000, 8000)));
    for bad in ["80-90", "9000-8000", "8000", "8000-70000", "a-b", ""] {
        assert_eq!(parse_port_range(bad), None, "{bad}");
    }
}

#[test]
fn port_mapping_errors_say_what_is_wrong() {
    let why = |text: &str| parse_port_mapping(text).unwrap_err();
    assert_eq!(why("80/sctp"), PortMappingError::UnknownProtocol("sctp".into()));
    assert_eq!(why("1-2:3"), PortMappingError::Range);
    assert_eq!(why("99999:80"), PortMappingError::OutOfRange("99999".into()));
    assert_eq!(why("a:80"), PortMappingError::NotAPort("a".into()));
    assert_eq!(why("1.2.3:80:80"), PortMappingError::NotAnIp("1.2.3".into()));
    // The host port is checked first.
    assert_eq!(why("x:y"), PortMappingError::NotAPort("x".into()));
    assert_eq!(why("80:0").to_string(), "port 0 is out of range (1-65535)");
    assert_eq!(why("1-2:3").to_string(), "port ranges are not supported; list each port separately");
    assert_eq!(why("80/sctp").to_string(), "unknown protocol `sctp`");
    assert_eq!(why("1.2.3:80:80").to_string(), "`1.2.3` is not an IP address");
    assert_eq!(parse_port_mapping("::1:82:82"), Ok(mapping(Some("::1"), Some(82), 82, Protocol::Tcp)));
}

#[test]
fn volumes_are_named_or_bind_mounts_resolved_against_the_manifest_directory() {
    let dir = Path::new("/proj");
    assert_eq!(
        parse_volume("data:/var/lib/data", dir),
        Ok(VolumeMount { source: VolumeSource::Named("data".into()), target: "/var/lib/data".into(), read_only: false })
    );
    assert_eq!(
        parse_volume("./conf:/etc/app:ro", dir),
        Ok(VolumeMount { source: VolumeSource::Bind(PathBuf::from("/proj/./conf")), target: "/etc/app".into(), read_only: true })
    );
    assert_eq!(parse_volume("/abs:/x:rw", dir).unwrap().source, VolumeSource::Bind(PathBuf::from("/abs")));
}

#[test]
fn volume_errors_say_what_is_wrong() {
    let why = |text: &str| parse_volume(text, Path::new("/proj")).unwrap_err();
    assert_eq!(why("x:/y:zz"), VolumeError::UnknownMode("zz".into()));
    assert_eq!(why("x"), VolumeError::MissingContainerPath);
    assert_eq!(why("a:b:c:d"), VolumeError::TooManyColons);
    assert_eq!(why("x:y"), VolumeError::RelativeContainerPath("y".into()));
    assert_eq!(why("-bad:/y"), VolumeError::BadSource("-bad".into()));
    assert_eq!(why(":/y").to_string(), "`` is neither a volume name nor a path starting with . or /");
    assert_eq!(why("x:/y:zz").to_string(), "unknown mode `zz` (use ro or rw)");
}

#[test]
fn image_references_are_checked_for_shape_and_case() {
    assert_eq!(image_reference_hint("postgres:15"), None);
    assert_eq!(image_reference_hint("REG.io/team/app@sha256:ab"), None);
    assert_eq!(image_reference_hint("localhost:5000/x:1"), None);
    assert_eq!(image_reference_hint(""), Some("write it as NAME[:TAG], e.g. \"postgres:15\""));
    assert_eq!(image_reference_hint("has space"), Some("write it as NAME[:TAG], e.g. \"postgres:15\""));
    assert_eq!(image_reference_hint("x/:tag"), Some("write it as NAME[:TAG], e.g. \"postgres:15\""));
    assert_eq!(image_reference_hint("reg.io/Team/app"), Some("image repository names must be lowercase"));
}

#[test]
fn names_are_dns_labels_with_a_suggestion_when_one_is_close() {
    assert!(is_dns_label("my-app2"));
    assert!(!is_dns_label("-x") && !is_dns_label("x-") && !is_dns_label("") && !is_dns_label("My_App"));
    assert_eq!(suggest_label("My_App"), ", e.g. `my-app`");
    assert_eq!(suggest_label("äpp"), "");
}

#[test]
fn mask_keys_are_table_dot_column() {
    assert!(is_table_column("users.email"));
    assert!(!is_table_column("users") && !is_table_column("a.b.c") && !is_table_column(".x") && !is_table_column("x-y.z"));
}

#[test]
fn the_json_schema_has_exactly_the_keys_each_section_reader_accepts() {
    use crate::manifest::schema::SECTIONS;
    let service_keys: Vec<&str> = [super::service::OWN_KEYS, super::compose::COMPOSE_KEYS].concat();
    let parser: &[(&str, &[&str])] = &[
        ("stack", super::stack::STACK_KEYS),
        ("service", &service_keys),
        ("build", super::service::BUILD_KEYS),
        ("ready", super::ready::READY_KEYS),
        ("fixtures", super::fixtures::FIXTURE_KEYS),
        ("smoke", super::checks::SMOKE_KEYS),
        ("http_check", super::checks::HTTP_CHECK_KEYS),
        ("tcp_check", super::checks::TCP_CHECK_KEYS),
        ("exec_check", super::checks::EXEC_CHECK_KEYS),
        ("sql_check", super::checks::SQL_CHECK_KEYS),
        ("latency", super::checks::LATENCY_KEYS),
        ("migrations", super::migrations::MIGRATIONS_KEYS),
        ("schedule", super::schedule::SCHEDULE_KEYS),
    ];
    assert_eq!(parser.len(), SECTIONS.len(), "a section without its parser key list here");
    for ((name, accepted), (schema_name, keys)) in parser.iter().zip(SECTIONS) {
        assert_eq!(name, schema_name);
        let mut accepted: Vec<&str> = accepted.to_vec();
        let mut described: Vec<&str> = keys.iter().map(|k| k.name).collect();
        accepted.sort_unstable();
        described.sort_unstable();
        assert_eq!(described, accepted, "schema table `{name}` (manifest/schema.rs) differs from what its reader accepts");
    }
    let top = crate::manifest::schema::json_schema();
    let mut top_keys: Vec<&str> = top["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    let mut accepted = super::TOP_KEYS.to_vec();
    top_keys.sort_unstable();
    accepted.sort_unstable();
    assert_eq!(top_keys, accepted);
}
