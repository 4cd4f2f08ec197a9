//! The verifier behind NGINX, end to end: Debian's NGINX in front of a trivial upstream (an
//! NGINX `return 200`), once as a plain proxy and once with docs/forward-auth.md's
//! `auth_request` block asking the verifier child (over plain HTTP); what the verifier adds to
//! a proxied request is the difference, measured in the same rounds with the same pinning
//! (NGINX on the servers' core).

use super::*;

/// The fixed rate of the paced end-to-end loads, in requests per second.
pub(crate) const GATEWAY_RATE: f64 = 5_000.0;

/// docs/forward-auth.md, whose NGINX block is measured as written (but see `doc_server_block`).
const GATEWAY_DOC: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/forward-auth.md"));

/// Debian's NGINX with the auth_request module, or why there is none. With
/// `APIKEY_NGINX_REQUIRED=1` (set by `.ci/run`) a missing NGINX stops the run.
fn nginx_binary() -> Result<std::path::PathBuf, String> {
    let found = ["nginx", "/usr/sbin/nginx"]
        .into_iter()
        .find_map(|candidate| Some((candidate, Command::new(candidate).arg("-V").output().ok()?)));
    let missing = match &found {
        None => "nginx is not installed (apt-get install nginx)",
        Some((_, out))
            if !String::from_utf8_lossy(&out.stderr)
                .contains("--with-http_auth_request_module") =>
        {
            "this nginx lacks the auth_request module"
        }
        Some((binary, _)) => return Ok(std::path::PathBuf::from(binary)),
    };
    assert!(
        !std::env::var("APIKEY_NGINX_REQUIRED").is_ok_and(|v| v == "1"),
        "APIKEY_NGINX_REQUIRED=1 but {missing}"
    );
    Err(missing.to_owned())
}

/// The doc's `nginx` block with its listen port, upstream and route audience (none: the
/// benchmark's tokens list no audience) replaced, and the verifier asked over plain HTTP at
/// `verifier`: the block's `proxy_pass https://…` becomes `http://`, its `proxy_ssl_*` lines go
/// (the verifier child serves no TLS).
fn doc_server_block(port: u16, upstream: u16, verifier: SocketAddr) -> String {
    let start = GATEWAY_DOC
        .find("```nginx\n")
        .expect("docs/forward-auth.md has an nginx example")
        + "```nginx\n".len();
    let len = GATEWAY_DOC[start..]
        .find("```")
        .expect("a closed nginx block");
    let mut block = String::new();
    let mut verifier_lines = 0;
    for line in GATEWAY_DOC[start..start + len].lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        let words = line.trim_start();
        if words.starts_with("proxy_ssl_") {
            continue;
        }
        if words.starts_with("proxy_pass https://") {
            verifier_lines += 1;
            block.push_str(&format!("{indent}proxy_pass http://{verifier}/auth;\n"));
        } else {
            block.push_str(line);
            block.push('\n');
        }
    }
    assert_eq!(
        verifier_lines, 1,
        "the nginx example of docs/forward-auth.md must ask the verifier with one `proxy_pass https://`"
    );
    for (from, to) in [
        ("listen 80;", format!("listen 127.0.0.1:{port};")),
        (
            "proxy_pass http://backend;",
            format!("proxy_pass http://127.0.0.1:{upstream};"),
        ),
        (
            "proxy_set_header X-Auth-Audience \"billing\";",
            "proxy_set_header X-Auth-Audience \"\";".to_owned(),
        ),
    ] {
        assert_eq!(
            block.matches(from).count(),
            1,
            "the nginx example of docs/forward-auth.md must contain `{from}` once: the benchmark replaces it"
        );
        block = block.replacen(from, &to, 1);
    }
    block
}

fn nginx_conf(dir: &std::path::Path, ports: [u16; 3], verifier: SocketAddr) -> String {
    let [upstream, plain, auth] = ports;
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n    access_log off;\n    keepalive_requests 10000000;\n\
         client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\n\
         server {{\n    listen 127.0.0.1:{upstream};\n    location / {{ return 200 ok; }}\n}}\n\n\
         server {{\n    listen 127.0.0.1:{plain};\n    location / {{ proxy_pass http://127.0.0.1:{upstream}; }}\n}}\n\n\
         {}}}\n",
        doc_server_block(auth, upstream, verifier)
    )
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) async fn gateway_e2e(
    verifier: SocketAddr,
    valid: Arc<Vec<String>>,
    rounds: &Rounds,
    pinning: Option<&Pinning>,
) -> Vec<Figure> {
    let binary = match nginx_binary() {
        Ok(binary) => binary,
        Err(why) => {
            println!("note: the NGINX end-to-end part was skipped: {why}");
            return vec![figure(
                "gateway",
                "NGINX end to end",
                format!("skipped: {why}"),
                "-",
                "-",
                "-",
            )];
        }
    };
    let dir = std::env::temp_dir().join(format!("apikey-bench-nginx-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).expect("nginx dir");
    let _cleanup = TempDir(dir.clone());
    let ports = [free_port(), free_port(), free_port()];
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(&dir, ports, verifier)).expect("nginx.conf");
    let error_log = dir.join("error.log");
    let child = server_command(pinning, &binary)
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(&error_log)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let mut nginx = Nginx(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ports
        .iter()
        .any(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err())
    {
        if let Ok(Some(status)) = nginx.0.try_wait() {
            panic!(
                "nginx exited ({status}):\n{}",
                std::fs::read_to_string(&error_log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "nginx did not listen in 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let [_, plain, auth] = ports.map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
    // [plain, auth] × [unpaced, paced]
    let mut results: [[Vec<LoadResult>; 2]; 2] = Default::default();
    for _ in 0..rounds.count {
        for (pace_index, pace) in [None, Some(GATEWAY_RATE)].into_iter().enumerate() {
            for (which, addr) in [plain, auth].into_iter().enumerate() {
                let r = load(addr, "/", valid.clone(), rounds.each, pace, 200).await;
                results[which][pace_index].push(r);
            }
        }
    }
    drop(nginx);
    let [[plain_max, plain_paced], [auth_max, auth_paced]] =
        results.map(|r| r.map(LoadRounds::new));
    let added = |q: fn(&LoadResult) -> f64| {
        let mut d: Vec<f64> = (auth_paced.rounds.iter().zip(&plain_paced.rounds))
            .map(|(a, p)| q(a) - q(p))
            .collect();
        d.sort_by(f64::total_cmp);
        percentile(&d, 0.5)
    };
    vec![
        figure(
            "gateway",
            format!(
                "NGINX + auth_request, {:.0}k req/s offered",
                GATEWAY_RATE / 1000.0
            ),
            format!(
                "{}, {:.0} req/s achieved",
                auth_paced.latency_text(),
                auth_paced.all.rate
            ),
            format!("{} (plain proxy)", plain_paced.latency_text()),
            "-",
            "-",
        ),
        figure(
            "gateway",
            "latency the verifier adds to a proxied request (median of rounds)",
            format!(
                "p50 {:+.0} µs, p99 {:+.0} µs",
                added(|r| r.p50_us),
                added(|r| r.p99_us)
            ),
            "-",
            "-",
            "-",
        ),
        figure(
            "gateway",
            "NGINX + auth_request, unpaced (32 connections)",
            format!(
                "{:.0} req/s, {}",
                auth_max.all.rate,
                auth_max.latency_text()
            ),
            format!(
                "{:.0} req/s, {} (plain proxy)",
                plain_max.all.rate,
                plain_max.latency_text()
            ),
            format!("{:.2}", auth_max.median_ratio(&plain_max)),
            "-",
        ),
    ]
}
