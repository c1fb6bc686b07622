//! `BollardEngine` against fake engine sockets: what counts as a lost engine, removals.

use super::*;

/// An engine socket that answers each connection with `answer(request line)` (after reading
/// the request head; `None`: closes at once, unread) and closes it.
fn fake_engine(answer: impl Fn(&str) -> Option<Vec<u8>> + Send + 'static) -> (tempfile::TempDir, BollardEngine) {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().map_while(std::result::Result::ok) {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&head).to_string();
            // Read the body too: closing with bytes unread would reset the connection.
            let length = text
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                .unwrap_or(0);
            let _ = conn.read_exact(&mut vec![0u8; length]);
            let line = text.lines().next().unwrap_or_default().to_string();
            if let Some(bytes) = answer(&line) {
                let _ = conn.write_all(&bytes);
            }
        }
    });
    let docker = Docker::connect_with_unix(path.to_str().unwrap(), 10, bollard::API_DEFAULT_VERSION).unwrap();
    let host = format!("unix://{}", path.display());
    (dir, BollardEngine { docker, host, podman: false })
}

fn fixed(bytes: &'static [u8]) -> impl Fn(&str) -> Option<Vec<u8>> + Send + 'static {
    move |_| Some(bytes.to_vec())
}

/// A complete JSON answer.
fn json(status: &str, body: &str) -> Option<Vec<u8>> {
    Some(
        format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            .into_bytes(),
    )
}

fn lost<T: std::fmt::Debug>(r: Result<T>) -> bool {
    match r {
        Err(Error::DockerUnreachable { .. }) => true,
        other => {
            eprintln!("not lost: {other:?}");
            false
        }
    }
}

#[tokio::test]
async fn a_socket_that_accepts_and_closes_is_a_lost_engine() {
    let (_dir, engine) = fake_engine(|_| None);
    assert!(lost(engine.list_containers("s").await));
    assert!(lost(engine.start_container("c").await));
}

#[tokio::test]
async fn an_answer_cut_short_is_a_lost_engine() {
    // Headers, then the connection ends inside the body ("error reading a body").
    let (_dir, engine) = fake_engine(fixed(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n[{\"Id\":"));
    assert!(lost(engine.list_containers("s").await));
    // A streamed answer (chunked) cut inside a chunk.
    let (_dir, engine) =
        fake_engine(fixed(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n{\"Sta"));
    assert!(lost(engine.wait_exit("c").await));
    // Half a status line.
    let (_dir, engine) = fake_engine(fixed(b"HTTP/1.1 2"));
    assert!(lost(engine.list_networks("s").await));
}

#[tokio::test]
async fn an_engine_that_answers_an_error_is_not_lost() {
    let (_dir, engine) = fake_engine(fixed(
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 18\r\n\r\n{\"message\":\"boom\"}",
    ));
    match engine.list_containers("s").await {
        Err(Error::Docker { .. }) => {}
        other => panic!("an answer is not a lost engine: {other:?}"),
    }
}

#[test]
fn references_split_at_the_tag_not_the_registry_port() {
    assert_eq!(split_reference("postgres:15"), ("postgres", "15"));
    assert_eq!(split_reference("postgres"), ("postgres", "latest"));
    assert_eq!(split_reference("localhost:5000/app"), ("localhost:5000/app", "latest"));
    assert_eq!(split_reference("localhost:5000/app:v2"), ("localhost:5000/app", "v2"));
}

/// Another process is removing the container (409): `remove_container` returns once it is
/// really gone, not at the 409 (the create of a same-named container would fail), and
/// gives up with an error if it stays.
#[tokio::test]
async fn a_removal_already_in_progress_is_waited_for() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let inspected = Arc::new(AtomicUsize::new(0));
    let seen = inspected.clone();
    let (_dir, engine) = fake_engine(move |line| {
        if line.starts_with("DELETE ") {
            json("409 Conflict", r#"{"message":"removal of container c is already in progress"}"#)
        } else if seen.fetch_add(1, Ordering::SeqCst) < 3 {
            json("200 OK", r#"{"Id":"c","State":{"Status":"removing"}}"#)
        } else {
            json("404 Not Found", r#"{"message":"No such container: c"}"#)
        }
    });
    engine.remove_container("c", 0).await.unwrap();
    assert_eq!(inspected.load(Ordering::SeqCst), 4, "returned before the container was gone");

    let (_dir, engine) = fake_engine(|_| json("200 OK", r#"{"Id":"c","State":{"Status":"removing"}}"#));
    let err = engine.wait_gone("c", Duration::from_millis(300), "removal in progress").await.unwrap_err();
    assert!(err.to_string().contains("still there"), "{err}");
}

/// An exec whose output stream ends while the command still runs (a proxy that cut the
/// attached connection) is an error saying so, not exit code -1 with an empty message.
#[tokio::test]
async fn an_exec_stream_that_ends_before_the_command_is_an_error() {
    let (_dir, engine) = fake_engine(|line| {
        if line.starts_with("POST /containers/c/exec") || line.contains("/containers/c/exec ") {
            json("201 Created", r#"{"Id":"e1"}"#)
        } else if line.contains("/exec/e1/start") {
            Some(
                b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
                    .to_vec(),
            )
        } else {
            json("200 OK", r#"{"ID":"e1","Running":true,"ExitCode":null}"#)
        }
    });
    let err = engine.exec("c", &["psql".to_string()]).await.unwrap_err();
    assert!(err.to_string().contains("ended before the command did (exit code unknown)"), "{err}");
}
