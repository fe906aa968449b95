//! The shutdown signal shared by every task: a `watch` flag set once, and
//! the bounded wait for the work still under way when it is set.

use std::time::Duration;
use tokio::sync::watch;

/// Resolves once shutdown was requested (or the sender is gone).
pub async fn requested(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Waits for `tasks` (sessions, delivery connections) to end by themselves;
/// once shutdown is requested, at most `grace` (`shutdown-grace`) more, then
/// ends the rest. What they were doing was not acknowledged (no 250 sent, no
/// delivery outcome stored), so it is done again after the restart: at
/// worst twice, never lost. Returns how many were ended.
pub async fn finish(tasks: &mut tokio::task::JoinSet<()>, shutdown: &watch::Receiver<bool>, grace: Duration) -> usize {
    let mut stop = shutdown.clone();
    let deadline = async {
        requested(&mut stop).await;
        tokio::time::sleep(grace).await;
    };
    let all_done = async { while tasks.join_next().await.is_some() {} };
    tokio::select! {
        _ = all_done => return 0,
        _ = deadline => {}
    }
    let left = tasks.len();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    left
}
