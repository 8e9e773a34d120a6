//! A capture session whose ring buffer a thread keeps drained until dropped: a full ring
//! makes hits cheaper and a bench's figure wrong.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use tracery_agent::{ArmOptions, PreparedBreakpoint, Session};

pub struct Drained {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drained {
    /// Runs `prepare` on the draining thread, arms the breakpoint it returns and returns
    /// once armed, with what `prepare` reported about the plan.
    pub fn arm<T: Send + 'static>(
        prepare: impl FnOnce() -> (PreparedBreakpoint, T) + Send + 'static,
    ) -> (Self, T) {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let (armed_tx, armed_rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let (bp, about) = prepare();
            let mut session = Session::start().expect("load eBPF");
            session
                .arm(&bp, &ArmOptions::default())
                .expect("attach capture");
            armed_tx.send(about).unwrap();
            while !s.load(Ordering::Relaxed) {
                session.drain_raw(Duration::from_millis(50)).expect("drain");
            }
        });
        let about = armed_rx.recv().expect("capture armed");
        (
            Self {
                stop,
                thread: Some(thread),
            },
            about,
        )
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
