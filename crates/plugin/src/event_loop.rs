//! The plugins' event loop on each worker: `MQ_startTimer`/`MQ_stopTimer`/
//! `MQ_resetTimer` and `MQ_ioWatch`/`MQ_ioUnwatch`, run as local tasks of
//! the worker's runtime so every callback fires on the context's thread.
//!
//! Calls may come from any thread; they reach the worker as [`Command`]s.
//! Memory: a timer is freed by the host when it fired or was stopped, a
//! watcher when it was unwatched, by whichever side still exists (the task
//! on the worker, or the call itself once the worker's loop has ended).

use std::ffi::{c_int, c_void};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

pub(crate) type TimerFn = unsafe extern "C" fn(*mut c_void);
pub(crate) type IoFn = unsafe extern "C" fn(*mut MqIoWatcher, c_int, c_int, *mut c_void);

/// Changes to a running timer or watcher.
pub(crate) enum Control {
    Reset(Duration),
    Stop,
}

/// What an `MQ_Timer*` points to.
pub struct MqTimer {
    pub(crate) control: UnboundedSender<Control>,
}

/// What an `MQ_IOWatcher*` points to.
pub struct MqIoWatcher {
    pub(crate) control: UnboundedSender<Control>,
}

/// Work for a worker's loop.
pub(crate) enum Command {
    Timer {
        timer: *mut MqTimer,
        control: UnboundedReceiver<Control>,
        after: Duration,
        cb: TimerFn,
        data: usize,
    },
    Watch {
        watcher: *mut MqIoWatcher,
        control: UnboundedReceiver<Control>,
        fd: RawFd,
        events: c_int,
        cb: IoFn,
        data: usize,
    },
    /// Start driving this worker's libev loop (made by the first MQ_ev).
    DriveLibev(usize),
}

// SAFETY: the raw pointers in a Command are only dereferenced on the worker
// thread that receives it; the sender merely carries them there.
unsafe impl Send for Command {}

/// The sending side, one per worker, cloned into every context of that worker.
pub(crate) type Commands = UnboundedSender<Command>;

/// Makes the channel for one worker.
pub(crate) fn channel() -> (Commands, UnboundedReceiver<Command>) {
    unbounded_channel()
}

/// Runs a worker's plugin event loop until the worker's runtime stops.
pub(crate) async fn run(mut commands: UnboundedReceiver<Command>) {
    while let Some(cmd) = commands.recv().await {
        match cmd {
            Command::Timer {
                timer,
                control,
                after,
                cb,
                data,
            } => {
                tokio::task::spawn_local(run_timer(timer, control, after, cb, data));
            }
            Command::Watch {
                watcher,
                control,
                fd,
                events,
                cb,
                data,
            } => {
                tokio::task::spawn_local(run_watch(watcher, control, fd, events, cb, data));
            }
            Command::DriveLibev(ev_loop) => {
                tokio::task::spawn_local(crate::libev::drive(ev_loop));
            }
        }
    }
}

async fn run_timer(
    timer: *mut MqTimer,
    mut control: UnboundedReceiver<Control>,
    after: Duration,
    cb: TimerFn,
    data: usize,
) {
    let mut deadline = tokio::time::Instant::now() + after;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                // SAFETY: `void (*)(void*)` as registered, on the context's thread.
                unsafe { cb(data as *mut c_void) };
                break;
            }
            c = control.recv() => match c {
                Some(Control::Reset(after)) => deadline = tokio::time::Instant::now() + after,
                Some(Control::Stop) | None => break,
            },
        }
    }
    // Fired or stopped: the host frees the timer (the plugin must not use it again).
    // SAFETY: created by Box::into_raw in MQ_startTimer and freed only here while this task lives.
    drop(unsafe { Box::from_raw(timer) });
}

/// A descriptor the plugin owns: watched, never closed by us.
struct Borrowed(RawFd);

impl AsRawFd for Borrowed {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Which of `events` `fd` is ready for now (level-triggered, like libev).
fn ready_now(fd: RawFd, events: c_int) -> c_int {
    let mut p = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    if events & 1 != 0 {
        p.events |= libc::POLLIN;
    }
    if events & 2 != 0 {
        p.events |= libc::POLLOUT;
    }
    // SAFETY: one valid pollfd, zero timeout.
    if unsafe { libc::poll(&mut p, 1, 0) } <= 0 {
        return 0;
    }
    let mut ready = 0;
    if p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 && events & 1 != 0 {
        ready |= 1;
    }
    if p.revents & (libc::POLLOUT | libc::POLLERR) != 0 && events & 2 != 0 {
        ready |= 2;
    }
    ready
}

async fn run_watch(
    watcher: *mut MqIoWatcher,
    mut control: UnboundedReceiver<Control>,
    fd: RawFd,
    events: c_int,
    cb: IoFn,
    data: usize,
) {
    let interest = match events & 3 {
        1 => Interest::READABLE,
        2 => Interest::WRITABLE,
        _ => Interest::READABLE | Interest::WRITABLE,
    };
    // SAFETY: the plugin promises (mailerq.h contract) that `fd` stays open
    // and the same until it calls MQ_ioUnwatch, which ends this task and drops
    // the AsyncFd first.
    match unsafe { AsyncFd::register_with_interest(Borrowed(fd), interest) }.map_err(|e| e.to_string()) {
        Ok(afd) => loop {
            let ready = ready_now(fd, events);
            if ready != 0 {
                // SAFETY: the callback type registered with MQ_ioWatch, on the context's thread.
                unsafe { cb(watcher, fd, ready, data as *mut c_void) };
                // Unwatched from inside the callback?
                if let Ok(Control::Stop) = control.try_recv() {
                    break;
                }
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                guard = afd.ready(interest) => match guard {
                    Ok(mut g) => g.clear_ready(),
                    Err(e) => {
                        tracing::warn!(fd, error = %e, "plugin io watcher failed; unwatched");
                        break;
                    }
                },
                c = control.recv() => if matches!(c, Some(Control::Stop) | None) { break },
            }
        },
        Err(e) => {
            tracing::error!(fd, error = %e, "MQ_ioWatch: cannot watch this descriptor (is it watched already on this worker?)");
            // Wait for the plugin's MQ_ioUnwatch before freeing, so its pointer stays valid until then.
            while let Some(c) = control.recv().await {
                if matches!(c, Control::Stop) {
                    break;
                }
            }
        }
    }
    // SAFETY: created by Box::into_raw in MQ_ioWatch, freed only here.
    drop(unsafe { Box::from_raw(watcher) });
}
