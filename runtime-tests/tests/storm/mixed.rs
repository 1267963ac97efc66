//! The mixed case of the async storm: a future dropped inside a loop callback.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use xev::net::{TcpListener, TcpStream};
use xev::time::{sleep, timeout};
use xev::{CallbackAction, Completion, CompletionState};

use crate::common::*;
use crate::runtime::{us, Live, RtWorld};

/// Drops a read future inside a loop callback, then checks that the read really
/// stopped: bytes sent afterwards must reach the next read.
pub(crate) async fn rt_mixed(w: Rc<RtWorld>) {
    let _live = Live::task(&w);
    let mut rng = w.fork();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    while !w.stop.get() {
        let a = Rc::new(TcpStream::connect(addr).await.expect("mixed connect"));
        let (b, _) = l.accept().await.expect("mixed accept");
        type Stash = Rc<RefCell<Option<Pin<Box<dyn Future<Output = ()>>>>>>;
        let stash: Stash = Rc::default();
        let a2 = a.clone();
        let mut fut: Pin<Box<dyn Future<Output = ()>>> = Box::pin(async move {
            let _ = a2.read(vec![0u8; 64]).await;
        });
        let _ = poll_once_and_drop(fut.as_mut());
        *stash.borrow_mut() = Some(fut);
        let mut c = KeepUntilDead(Some(completion()));
        let s2 = stash.clone();
        xev::rt::with_loop(|lp| {
            lp.timer(c.pin(), rng.below(3), move |_, _, _| {
                drop(s2.borrow_mut().take());
                CallbackAction::Disarm
            })
        });
        while c.active() {
            sleep(Duration::from_millis(1)).await;
        }
        sleep(Duration::from_millis(2)).await;
        w.bump("futures_dropped_in_callbacks");
        if let Err(e) = b.write_all(b"mixed".to_vec()).await.0 {
            w.fail(format!("async mixed: write: {e}"));
        }
        match timeout(Duration::from_secs(2), a.read_exact(vec![0u8; 5])).await {
            Ok((Ok(()), got)) if got == b"mixed" => {}
            Ok(other) => w.fail(format!(
                "async mixed: read after the dropped read: {other:?}"
            )),
            Err(_) => w.fail(
                "async mixed: a read future dropped inside a loop callback kept running and \
                 took the bytes meant for the next read (its cancel was lost)"
                    .into(),
            ),
        }
        sleep(us(&mut rng, 5000)).await;
    }
}

/// A completion that is leaked instead of dropped if its owner goes while it is still
/// Active (a task aborted mid-wait), rather than aborting the process.
struct KeepUntilDead(Option<Pin<Box<Completion>>>);

impl KeepUntilDead {
    fn pin(&mut self) -> Pin<&mut Completion> {
        self.0.as_mut().expect("present").as_mut()
    }
    fn active(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|c| c.state() == CompletionState::Active)
    }
}

impl Drop for KeepUntilDead {
    fn drop(&mut self) {
        if self.active() {
            std::mem::forget(self.0.take());
        }
    }
}
