//! A runtime of one test's own, for the tests that check what the whole test process shares:
//! the panic hook and the global log subscriber. The runtime's threads (workers and blocking
//! pool), and the test's thread while it waits on the runtime, count their panics for this test
//! only and, if asked, keep their logs for it; tests running beside it in the same process
//! neither add to its count nor write into its logs.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};

use tracing::Dispatch;
use tracing::dispatcher::DefaultGuard;

thread_local! {
    /// The panic count of the test whose runtime this thread belongs to.
    static PANICS: RefCell<Option<Arc<AtomicUsize>>> = const { RefCell::new(None) };
    /// Keeps that test's subscriber this thread's default.
    static LOGS: RefCell<Option<DefaultGuard>> = const { RefCell::new(None) };
}

/// A multi-thread runtime with two workers, as `#[tokio::test(flavor = "multi_thread",
/// worker_threads = 2)]` builds, whose panics are counted apart from other tests'.
pub struct Isolated {
    runtime: tokio::runtime::Runtime,
    panics: Arc<AtomicUsize>,
    logs: Option<Dispatch>,
}

impl Isolated {
    pub fn new() -> Isolated {
        Isolated::build(None)
    }

    /// Like [`Isolated::new`], and every event of every crate logged on the test's threads, at
    /// `trace` and above, is kept in the returned [`Logs`] (whatever the global subscriber is).
    pub fn with_trace_logs() -> (Isolated, Logs) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_ansi(false)
            .with_writer(logs.clone())
            .finish();
        (Isolated::build(Some(Dispatch::new(subscriber))), logs)
    }

    fn build(logs: Option<Dispatch>) -> Isolated {
        install_panic_hook();
        let panics = Arc::new(AtomicUsize::new(0));
        let (count, dispatch) = (panics.clone(), logs.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || join(&count, dispatch.as_ref()))
            .on_thread_stop(leave)
            .build()
            .expect("the test's runtime starts");
        Isolated {
            runtime,
            panics,
            logs,
        }
    }

    /// Runs `test` to completion on this runtime.
    pub fn block_on<F: Future>(&self, test: F) -> F::Output {
        struct Joined;
        impl Drop for Joined {
            fn drop(&mut self) {
                leave();
            }
        }
        join(&self.panics, self.logs.as_ref());
        let _joined = Joined;
        self.runtime.block_on(test)
    }

    /// Panics on this test's threads so far.
    pub fn panics(&self) -> usize {
        self.panics.load(Ordering::SeqCst)
    }
}

/// What a test's subscriber wrote.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// Makes the current thread count its panics into `panics` and log into `logs`.
fn join(panics: &Arc<AtomicUsize>, logs: Option<&Dispatch>) {
    // The guard of an earlier join goes first: dropping it restores what it replaced.
    leave();
    PANICS.with(|p| *p.borrow_mut() = Some(panics.clone()));
    if let Some(logs) = logs {
        let guard = tracing::dispatcher::set_default(logs);
        LOGS.with(|l| *l.borrow_mut() = Some(guard));
    }
}

fn leave() {
    let _ = PANICS.try_with(|p| p.borrow_mut().take());
    let _ = LOGS.try_with(|l| l.borrow_mut().take());
}

/// Once per process: a panic hook that adds to the count of the panicking thread's test, if it
/// has one, and then reports the panic as before.
fn install_panic_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = PANICS.try_with(|p| {
                if let Ok(p) = p.try_borrow()
                    && let Some(count) = p.as_ref()
                {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            });
            previous(info);
        }));
    });
}

#[test]
fn counts_and_keeps_only_what_its_own_threads_do() {
    let (test, logs) = Isolated::with_trace_logs();
    // Another test's thread, at the same time.
    let elsewhere = std::thread::spawn(|| {
        tracing::info!("a line of another test");
        std::panic::catch_unwind(|| panic!("a panic of another test")).is_err()
    });
    test.block_on(async {
        tracing::info!("a line of the test's own thread");
        let worker = tokio::spawn(async {
            tracing::info!("a line of a worker");
            panic!("a panic of a task");
        });
        assert!(worker.await.is_err());
        let blocking = tokio::task::spawn_blocking(|| panic!("a panic of a blocking task"));
        assert!(blocking.await.is_err());
    });
    assert!(elsewhere.join().expect("the other thread ends"));
    assert_eq!(test.panics(), 2);
    let text = logs.text();
    assert!(
        text.contains("a line of the test's own thread") && text.contains("a line of a worker"),
        "{text}"
    );
    assert!(!text.contains("another test"), "{text}");
}
