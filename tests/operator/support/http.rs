//! A tiny HTTP/1.1 client for talking to the verifier: one request per
//! connection, or many over one keep-alive connection.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One request with `Connection: close`: (status, head, body).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the verifier");
    let req = format_request(method, path, headers, body, false);
    stream.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status_of(head), head.to_owned(), body.to_owned())
}

fn format_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    keep_alive: bool,
) -> String {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: verifier\r\nConnection: {connection}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}

fn status_of(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status code in {head:?}"))
}

/// A keep-alive connection; responses must carry `content-length`.
pub struct Connection {
    stream: BufReader<TcpStream>,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> Connection {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the verifier");
        Connection {
            stream: BufReader::new(stream),
        }
    }

    /// Sends one request and reads its response: (status, head, body).
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, String) {
        let req = format_request(method, path, headers, body, true);
        self.stream
            .get_mut()
            .write_all(req.as_bytes())
            .await
            .expect("send");
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = self.stream.read_line(&mut line).await.expect("read head");
            assert!(n > 0, "connection closed mid-response; head so far: {head}");
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("response without content-length: {head}"));
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.expect("read body");
        (
            status_of(&head),
            head,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }
}
