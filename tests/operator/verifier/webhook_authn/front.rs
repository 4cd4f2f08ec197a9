//! A TLS front between the upstream server and a verifier (served over plain HTTP behind it),
//! for the faults a test needs: it forwards TokenReviews as they are, or without
//! `spec.audiences` (so that only the upstream's own audience check is left), or answers 500,
//! or is not there at all (stopped: connections refused), and records each exchange.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apikey_operator::serve::{self, TlsSource};
use apikey_operator::verifier::http::TOKEN_REVIEW_PATH;
use apikey_operator::verifier::tls::acceptor_from_pem;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, HeaderName};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::Pki;
use crate::support::http;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Forward,
    StripAudiences,
    Fail500,
}

/// One TokenReview the upstream server sent: the request, and the verifier's answer (none when
/// the front answered 500 itself) with how long the verifier took.
#[derive(Clone, Debug)]
pub(super) struct Exchange {
    pub request: Value,
    pub answer: Option<Value>,
    pub verifier_took: Duration,
}

#[derive(Clone)]
struct Shared {
    verifier: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    log: Arc<Mutex<Vec<Exchange>>>,
}

struct Tls(Arc<TlsAcceptor>);

impl TlsSource for Tls {
    fn acceptor(&self) -> Arc<TlsAcceptor> {
        self.0.clone()
    }
}

pub(super) struct Front {
    pub addr: SocketAddr,
    shared: Shared,
    tls: Arc<TlsAcceptor>,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Front {
    /// Serves on a free loopback port with `pki`'s certificate, forwarding to `verifier`.
    pub async fn start(pki: &Pki, verifier: SocketAddr) -> Front {
        let cert = std::fs::read(&pki.cert).expect("certificate");
        let key = std::fs::read(&pki.key).expect("key");
        let tls = Arc::new(acceptor_from_pem(&cert, &key).expect("TLS configuration"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut front = Front {
            addr: listener.local_addr().expect("address"),
            shared: Shared {
                verifier,
                mode: Arc::new(Mutex::new(Mode::Forward)),
                log: Arc::default(),
            },
            tls,
            running: None,
        };
        front.serve(listener);
        front
    }

    fn serve(&mut self, listener: TcpListener) {
        let router = axum::Router::new()
            .route(TOKEN_REVIEW_PATH, axum::routing::post(review))
            .with_state(self.shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let tls: Arc<dyn TlsSource> = Arc::new(Tls(self.tls.clone()));
        let task = tokio::spawn(serve::serve(listener, router, Some(tls), async move {
            let _ = stopped.await;
        }));
        self.running = Some((stop, task));
    }

    pub fn set(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    /// The exchanges so far, and forgets them.
    pub fn take_exchanges(&self) -> Vec<Exchange> {
        std::mem::take(&mut *self.shared.log.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Stops listening and closes every connection: the verifier is unreachable.
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the front stops")
                .expect("front task");
        }
    }

    /// Listens on the same port again.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("bind the same port");
        self.serve(listener);
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some((_, task)) = self.running.take() {
            task.abort();
        }
    }
}

async fn review(
    State(shared): State<Shared>,
    body: String,
) -> (StatusCode, [(HeaderName, &'static str); 1], String) {
    let mode = *shared.mode.lock().unwrap_or_else(|e| e.into_inner());
    let mut request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut exchange = Exchange {
        request: request.clone(),
        answer: None,
        verifier_took: Duration::ZERO,
    };
    let answer = if mode == Mode::Fail500 {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected failure\n".to_owned(),
        )
    } else {
        if mode == Mode::StripAudiences
            && let Some(spec) = request.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.remove("audiences");
        }
        let start = Instant::now();
        let (status, _, answer) = http::request(
            shared.verifier,
            "POST",
            TOKEN_REVIEW_PATH,
            &[("Content-Type", "application/json")],
            &request.to_string(),
        )
        .await;
        exchange.verifier_took = start.elapsed();
        exchange.answer = serde_json::from_str(&answer).ok();
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            answer,
        )
    };
    shared
        .log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(exchange);
    (answer.0, [(CONTENT_TYPE, "application/json")], answer.1)
}
