//! The embedded store against its contract: durability across reopen, leases,
//! delays, torn tails, segment turnover.

use sluice_queue::{now_ms, EmbeddedStore, NewMessage, Queue, StoreOptions};
use std::io::Write;
use std::time::Duration;

fn open(dir: &std::path::Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, StoreOptions::default()).expect("open store")
}

fn msg(q: &str, s: &str) -> NewMessage {
    NewMessage::now(q, s.as_bytes().to_vec())
}

const NOW: Duration = Duration::ZERO;

#[tokio::test]
async fn publish_take_ack_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.publish(vec![
            msg("outbox", "a"),
            msg("outbox", "b"),
            msg("outbox", "c"),
            msg("inbox", "x"),
        ])
        .await
        .unwrap();
        let got = s.take("outbox", 2, NOW).await.unwrap();
        assert_eq!(got.iter().map(|m| m.body.as_slice()).collect::<Vec<_>>(), [b"a", b"b"]);
        // a is acked; b stays leased and is never acked before the "crash".
        s.settle(vec![], vec![got[0].id]).await.unwrap();
        let stats = s.stats().await.unwrap();
        let outbox = stats.iter().find(|q| q.name == "outbox").unwrap();
        assert_eq!((outbox.ready, outbox.leased), (1, 1));
    }
    let s = open(dir.path());
    let got = s.take("outbox", 10, NOW).await.unwrap();
    let bodies: Vec<&[u8]> = got.iter().map(|m| m.body.as_slice()).collect();
    assert_eq!(bodies, [b"b", b"c"], "acked message gone, leased one handed out again");
    assert_eq!(s.peek("inbox", 10).await.unwrap()[0].body, b"x");
    assert_eq!(s.peek("inbox", 10).await.unwrap().len(), 1, "peek does not consume");
}

#[tokio::test]
async fn release_returns_message() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.publish(vec![msg("q", "one")]).await.unwrap();
    let got = s.take("q", 1, NOW).await.unwrap();
    assert!(s.take("q", 1, NOW).await.unwrap().is_empty());
    s.release(vec![got[0].id]).await.unwrap();
    assert_eq!(s.take("q", 1, NOW).await.unwrap()[0].body, b"one");
}

#[tokio::test]
async fn delayed_messages_wait_for_their_time() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let due = now_ms() + 400;
    s.publish(vec![
        NewMessage {
            queue: "q".into(),
            body: b"later".to_vec(),
            not_before_ms: due,
        },
        msg("q", "now"),
    ])
    .await
    .unwrap();
    let first = s.take("q", 10, NOW).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].body, b"now");
    let st = s.stats().await.unwrap();
    assert_eq!((st[0].delayed, st[0].leased), (1, 1));
    // Waiting take wakes when the delayed one becomes due.
    let later = s.take("q", 10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].body, b"later");
    assert!(now_ms() >= due, "not handed out before its time");
}

#[tokio::test]
async fn settle_publishes_and_acks_together() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.publish(vec![msg("outbox", "m")]).await.unwrap();
        let got = s.take("outbox", 1, NOW).await.unwrap();
        s.settle(vec![msg("results", "r")], vec![got[0].id]).await.unwrap();
    }
    let s = open(dir.path());
    assert!(s.peek("outbox", 10).await.unwrap().is_empty());
    assert_eq!(s.peek("results", 10).await.unwrap()[0].body, b"r");
}

#[tokio::test]
async fn torn_tail_is_cut_and_store_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.publish(vec![msg("q", "kept-1"), msg("q", "kept-2")]).await.unwrap();
    }
    let seg = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
    let len = std::fs::metadata(&seg).unwrap().len();
    // A crash in the middle of a write: a length prefix and half a payload.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 1, 9])
        .unwrap();
    {
        let s = open(dir.path());
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), len, "torn tail cut");
        s.publish(vec![msg("q", "after")]).await.unwrap();
    }
    let s = open(dir.path());
    let bodies: Vec<Vec<u8>> = s.peek("q", 10).await.unwrap().into_iter().map(|m| m.body).collect();
    assert_eq!(bodies, [b"kept-1".to_vec(), b"kept-2".to_vec(), b"after".to_vec()]);
}

#[tokio::test]
async fn spent_segments_are_deleted_and_stragglers_relocated() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        segment_size: 4096,
        ..Default::default()
    };
    let body = "x".repeat(500);
    {
        let s = EmbeddedStore::open(dir.path(), opts.clone()).unwrap();
        // One long-delayed message first, then lots of traffic that is acked.
        s.publish(vec![NewMessage {
            queue: "q".into(),
            body: b"straggler".to_vec(),
            not_before_ms: now_ms() + 3_600_000,
        }])
        .await
        .unwrap();
        for _ in 0..200 {
            s.publish(vec![msg("q", &body)]).await.unwrap();
            let got = s.take("q", 1, NOW).await.unwrap();
            s.settle(vec![], vec![got[0].id]).await.unwrap();
        }
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(files <= 3, "spent segments deleted, got {files} files");
    }
    let s = EmbeddedStore::open(dir.path(), opts).unwrap();
    let st = s.stats().await.unwrap();
    assert_eq!((st[0].ready, st[0].delayed), (0, 1), "only the straggler is left");
    assert_eq!(s.peek("q", 1).await.unwrap()[0].body, b"straggler");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = std::sync::Arc::new(open(dir.path()));
        let mut tasks = Vec::new();
        for i in 0..500 {
            let s = s.clone();
            tasks.push(tokio::spawn(
                async move { s.publish(vec![msg("q", &i.to_string())]).await },
            ));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    }
    let s = open(dir.path());
    let mut got: Vec<u32> = s
        .peek("q", 1000)
        .await
        .unwrap()
        .iter()
        .map(|m| std::str::from_utf8(&m.body).unwrap().parse().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..500).collect::<Vec<_>>());
}

#[tokio::test]
async fn garbage_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0000000001.log"), b"not a segment at all").unwrap();
    let err = EmbeddedStore::open(dir.path(), StoreOptions::default())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("is not a Sluice queue segment"), "{err}");
}
