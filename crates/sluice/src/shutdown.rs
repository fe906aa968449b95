//! The shutdown signal shared by every task: a `watch` flag set once.

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
