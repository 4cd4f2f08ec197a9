//! The load generator for section 4: paced and unpaced connections to the verifier, each
//! answer parsed and its status checked.

use super::*;

pub(crate) struct LoadResult {
    pub(crate) rate: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    /// Every request's latency, sorted.
    pub(crate) latencies: Vec<f64>,
    pub(crate) duration: Duration,
}

/// One kind of load's rounds, and all of them taken together.
pub(crate) struct LoadRounds {
    pub(crate) rounds: Vec<LoadResult>,
    pub(crate) all: LoadResult,
}

impl LoadRounds {
    pub(crate) fn new(rounds: Vec<LoadResult>) -> LoadRounds {
        let duration = rounds.iter().map(|r| r.duration).sum();
        let latencies = rounds.iter().flat_map(|r| r.latencies.iter().copied());
        let all = LoadResult::new(latencies.collect(), duration);
        LoadRounds { rounds, all }
    }

    /// The median over rounds of this load's rate against `baseline`'s in the same round.
    pub(crate) fn median_ratio(&self, baseline: &LoadRounds) -> f64 {
        let mut ratios: Vec<f64> = (self.rounds.iter().zip(&baseline.rounds))
            .map(|(r, b)| r.rate / b.rate)
            .collect();
        ratios.sort_by(f64::total_cmp);
        percentile(&ratios, 0.5)
    }

    /// `figure` of each round: the median, the lowest and the highest.
    pub(crate) fn spread(&self, figure: impl Fn(&LoadResult) -> f64) -> Spread {
        let mut values: Vec<f64> = self.rounds.iter().map(figure).collect();
        values.sort_by(f64::total_cmp);
        Spread {
            median: percentile(&values, 0.5),
            low: values.first().copied().unwrap_or(f64::NAN),
            high: values.last().copied().unwrap_or(f64::NAN),
        }
    }

    /// p50, p99 and p99.9 in µs, each the median of the rounds' with their range.
    pub(crate) fn latency_text(&self) -> String {
        format!(
            "p50 {}, p99 {}, p99.9 {} µs",
            self.spread(|r| r.p50_us),
            self.spread(|r| r.p99_us),
            self.spread(|r| r.p999_us)
        )
    }
}

/// A figure over rounds: median (lowest–highest).
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) low: f64,
    pub(crate) high: f64,
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} ({:.0}–{:.0})", self.median, self.low, self.high)
    }
}

impl LoadResult {
    pub(crate) fn new(mut latencies: Vec<f64>, duration: Duration) -> LoadResult {
        latencies.sort_by(f64::total_cmp);
        LoadResult {
            rate: latencies.len() as f64 / duration.as_secs_f64(),
            p50_us: percentile(&latencies, 0.5),
            p99_us: percentile(&latencies, 0.99),
            p999_us: percentile(&latencies, 0.999),
            latencies,
            duration,
        }
    }
}

/// Keep-alive HTTP/1.1 clients on loopback; with `pace`, an offered rate in
/// requests per second spread evenly over the connections (see
/// `paced_connection`). Every answer must have status `expect`, or the
/// figure would time the wrong path: the run stops.
pub(crate) async fn load(
    addr: SocketAddr,
    path: &'static str,
    values: Arc<Vec<String>>,
    duration: Duration,
    pace: Option<f64>,
    expect: u16,
) -> LoadResult {
    let connections = 32;
    // Requests are built before the clock starts, so that the client's work
    // per request is a write and a parse, as in wrk.
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(if values.is_empty() {
        vec![format!("GET {path} HTTP/1.1\r\nHost: v\r\n\r\n").into_bytes()]
    } else {
        values
            .iter()
            .map(|v| {
                format!("GET {path} HTTP/1.1\r\nHost: v\r\nX-API-Key: {v}\r\n\r\n").into_bytes()
            })
            .collect()
    });
    let start = Instant::now();
    let end = start + duration;
    if let Some(rate) = pace {
        let interval = Duration::from_secs_f64(connections as f64 / rate);
        // Joined off the runtime: its worker threads serve the verifier.
        let paced = tokio::task::spawn_blocking(move || {
            let threads: Vec<_> = (0..connections)
                .map(|c| {
                    let requests = requests.clone();
                    // Connection c sends at start + (c / connections + n) × interval.
                    let first = start + interval.mul_f64(c as f64 / connections as f64);
                    let lane = Lane {
                        first: c,
                        stride: connections,
                    };
                    std::thread::spawn(move || {
                        paced_connection(addr, path, &requests, lane, first, interval, end, expect)
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().expect("a paced load connection failed"))
                .collect()
        });
        return LoadResult::new(paced.await.expect("the paced load"), duration);
    }
    let mut tasks = Vec::new();
    for c in 0..connections {
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let Ok(mut stream) = TcpStream::connect(addr).await else {
                return latencies;
            };
            let _ = stream.set_nodelay(true);
            let mut buf = Vec::with_capacity(4096);
            let mut i = c;
            while Instant::now() < end {
                let req = &requests[i % requests.len()];
                i += connections;
                let start = Instant::now();
                if stream.write_all(req).await.is_err() {
                    break;
                }
                match read_response(&mut stream, &mut buf).await {
                    Some(status) => check_status(path, status, expect),
                    None => break,
                }
                latencies.push(start.elapsed().as_secs_f64() * 1e6);
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("a load connection failed"));
    }
    LoadResult::new(all, duration)
}

pub(crate) fn check_status(path: &str, status: u16, expect: u16) {
    assert_eq!(
        status, expect,
        "GET {path} answered {status}, expected {expect}: the load measures the wrong path"
    );
}

/// Which of the prebuilt requests a connection sends: `first`, then every
/// `stride`-th.
pub(crate) struct Lane {
    first: usize,
    stride: usize,
}

/// One paced connection on an OS thread of its own. tokio's timer ticks
/// every millisecond, so paced tasks woke on the same tick and sent in
/// bursts of 20–32 requests each millisecond, whatever their schedule; a
/// thread's sleep ends within tens of microseconds of its instant, so the
/// connections' staggered schedules give evenly spaced requests (as wrk2
/// paces). A late request is sent at once, and timed from when it was sent.
#[allow(clippy::too_many_arguments)]
pub(crate) fn paced_connection(
    addr: SocketAddr,
    path: &str,
    requests: &[Vec<u8>],
    lane: Lane,
    first: Instant,
    interval: Duration,
    end: Instant,
    expect: u16,
) -> Vec<f64> {
    use std::io::Write;
    let mut latencies = Vec::new();
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return latencies;
    };
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut next = first;
    let mut i = lane.first;
    while next < end {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        next += interval;
        let req = &requests[i % requests.len()];
        i += lane.stride;
        let start = Instant::now();
        if stream.write_all(req).is_err() {
            break;
        }
        let read = |got: &mut Vec<u8>| {
            let mut chunk = [0u8; 4096];
            let n = std::io::Read::read(&mut stream, &mut chunk)
                .ok()
                .filter(|&n| n > 0)?;
            got.extend_from_slice(&chunk[..n]);
            Some(())
        };
        match blocking_response(&mut buf, read) {
            Some(status) => check_status(path, status, expect),
            None => break,
        }
        latencies.push(start.elapsed().as_secs_f64() * 1e6);
    }
    latencies
}

/// A response's status once `got` holds all of it (head + Content-Length
/// body); `Ok(None)` while more is needed, `Err` when it is not HTTP.
pub(crate) fn parsed_response(got: &[u8]) -> Result<Option<u16>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(got) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let status = response.code.ok_or(())?;
    let len: usize = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .unwrap_or(0);
    Ok((got.len() >= head + len).then_some(status))
}

/// Reads one response with `read` (which appends to `got`); its status, or
/// `None` when the connection ended.
pub(crate) fn blocking_response(
    got: &mut Vec<u8>,
    mut read: impl FnMut(&mut Vec<u8>) -> Option<()>,
) -> Option<u16> {
    got.clear();
    loop {
        read(got)?;
        if let Some(status) = parsed_response(got).ok()? {
            return Some(status);
        }
    }
}

/// Reads one response from a keep-alive connection into `got`; its status
/// code, or `None` when the connection ended. The head is parsed by
/// httparse (hyper's parser), so the client's cost hardly grows with the
/// size of the answer it times.
pub(crate) async fn read_response(stream: &mut TcpStream, got: &mut Vec<u8>) -> Option<u16> {
    got.clear();
    loop {
        stream.read_buf(got).await.ok().filter(|&n| n > 0)?;
        if let Some(status) = parsed_response(got).ok()? {
            return Some(status);
        }
    }
}
