//! The scheduler in-process, on tokio's paused clock: connections are
//! recorded by a [`Recorder`] instead of opened, sending takes virtual time,
//! so what is asserted is the scheduling (how many connections, which jobs
//! on which, when they end), deterministically and without real sleeps.

use super::*;
use crate::deliver::outcome::{ResultKind, State};
use crate::deliver::outgoing::{Defaults, Outgoing};
use crate::deliver::{InFlight, Next};
use sluice_shaping::capacity::{Capacity, CapacityRow, DomainScope, Limit};
use sluice_smtp::client::Stage;

/// What happened, with the virtual time since the start.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Open { connection: usize, at: Duration },
    Send { connection: usize, job: u64 },
    Quit { connection: usize, at: Duration },
    Settle { job: u64, result: &'static str },
}

/// A connector whose connections are numbers: opening fails for routes in
/// `unreachable`, sending takes `send_time` and breaks on jobs in `breaks`.
struct Recorder {
    start: Instant,
    send_time: Duration,
    unreachable: Vec<Route>,
    breaks: Vec<u64>,
    opened: Cell<usize>,
    open_now: Cell<usize>,
    most_open: Cell<usize>,
    events: RefCell<Vec<Event>>,
    /// With `record_times`: (job, when it was sent).
    record_times: bool,
    times: RefCell<Vec<(u64, Duration)>>,
}

impl Recorder {
    fn new(send_time: Duration) -> Recorder {
        Recorder {
            start: Instant::now(),
            send_time,
            unreachable: Vec::new(),
            breaks: Vec::new(),
            opened: Cell::new(0),
            open_now: Cell::new(0),
            most_open: Cell::new(0),
            events: RefCell::new(Vec::new()),
            record_times: false,
            times: RefCell::new(Vec::new()),
        }
    }

    fn events(&self) -> Vec<Event> {
        self.events.borrow().clone()
    }

    fn opens(&self) -> usize {
        self.events().iter().filter(|e| matches!(e, Event::Open { .. })).count()
    }

    fn settled(&self) -> Vec<(u64, &'static str)> {
        let mut out: Vec<_> = self
            .events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Settle { job, result } => Some((job, result)),
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    /// The jobs each connection carried, by connection.
    fn per_connection(&self) -> Vec<Vec<u64>> {
        let mut out = vec![Vec::new(); self.opened.get()];
        for e in self.events() {
            if let Event::Send { connection, job } = e {
                out[connection].push(job);
            }
        }
        out
    }
}

impl Connector for Recorder {
    type Connection = usize;

    fn remote(&self, connection: &usize) -> IpAddr {
        // One MX address per connection number is enough for these tests.
        IpAddr::from([127, 0, 1, (*connection % 250) as u8])
    }

    async fn open(&self, route: &Route, _first: &sluice_shaping::Destination) -> Result<usize, OpenError> {
        if self.unreachable.contains(route) {
            return Err(OpenError::Failed(Attempt::failed(
                State::Connect,
                ResultKind::Error,
                "connection refused",
                false,
            )));
        }
        let connection = self.opened.get();
        self.opened.set(connection + 1);
        self.open_now.set(self.open_now.get() + 1);
        self.most_open.set(self.most_open.get().max(self.open_now.get()));
        let at = self.start.elapsed();
        self.events.borrow_mut().push(Event::Open { connection, at });
        Ok(connection)
    }

    async fn send(&self, connection: &mut usize, job: &Job) -> Result<Attempt, Attempt> {
        self.events.borrow_mut().push(Event::Send {
            connection: *connection,
            job: job.id,
        });
        if self.record_times {
            self.times.borrow_mut().push((job.id, self.start.elapsed()));
        }
        tokio::time::sleep(self.send_time).await;
        if self.breaks.contains(&job.id) {
            self.open_now.set(self.open_now.get() - 1);
            return Err(Attempt::failed(Stage::Data, ResultKind::Lost, "connection lost", false));
        }
        Ok(Attempt::failed(Stage::Message, ResultKind::Accepted, "250 ok", false))
    }

    async fn quit(&self, connection: usize) {
        self.open_now.set(self.open_now.get() - 1);
        let at = self.start.elapsed();
        self.events.borrow_mut().push(Event::Quit { connection, at });
    }

    fn settle(&self, job: Job, attempt: &Attempt) {
        self.events.borrow_mut().push(Event::Settle {
            job: job.id,
            result: attempt.kind.as_str(),
        });
    }
}

fn route(domain: &str) -> Route {
    Route {
        next: Next::Domain(domain.into()),
        local: None,
    }
}

fn job(id: u64, route: &Route) -> Job {
    job_to(id, route, "example.com")
}

fn job_to(id: u64, route: &Route, domain: &str) -> Job {
    let json =
        format!(r#"{{"envelope":"s@example.net","recipient":"r{id}@{domain}","mime":"Subject: x\r\n\r\nx\r\n"}}"#);
    let defaults = Defaults {
        max_delivertime: 86_400,
        max_attempts: 0,
        dsn: Default::default(),
    };
    let msg = Outgoing::parse(json.as_bytes(), defaults, 0).expect("a valid test message");
    let permits = Arc::new(Semaphore::new(2));
    let permit = InFlight::new(
        permits.clone().try_acquire_owned().unwrap(),
        permits.try_acquire_owned().unwrap(),
    );
    Job {
        id,
        msg,
        route: route.clone(),
        permit,
    }
}

/// The shaper's defaults as the config gives them (no capacity rows).
fn defaults(per_destination: usize, per_connection: u64) -> sluice_shaping::capacity::Defaults {
    sluice_shaping::capacity::Defaults {
        connections: per_destination as u64,
        messages_per_connection: per_connection,
        idle: IDLE,
        queue_size: 5000,
    }
}

fn limits_with(
    rows: Vec<CapacityRow>,
    per_destination: usize,
    per_connection: u64,
    all: usize,
) -> (Limits, watch::Sender<bool>) {
    let (stop, shutdown) = watch::channel(false);
    let shaper = Shaper::new(Capacity::new(rows).0, defaults(per_destination, per_connection));
    let limits = Limits {
        shaper: Arc::new(Mutex::new(shaper)),
        all: Arc::new(Semaphore::new(all)),
        in_and_out: Arc::new(Semaphore::new(all)),
        shutdown,
        grace: Duration::from_secs(30),
    };
    (limits, stop)
}

fn limits(per_destination: usize, per_connection: u64, all: usize) -> (Limits, watch::Sender<bool>) {
    limits_with(Vec::new(), per_destination, per_connection, all)
}

/// Runs the scheduler on `recorder` with `feed` sending its jobs; returns
/// when the scheduler has ended (the feed dropped its sender).
async fn schedule<F, Fut>(recorder: Rc<Recorder>, limits: Limits, feed: F)
where
    F: FnOnce(mpsc::UnboundedSender<Job>) -> Fut,
    Fut: Future<Output = ()>,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            let scheduler = tokio::task::spawn_local(run(recorder, limits, rx));
            feed(tx).await;
            scheduler.await.unwrap();
        })
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_busy_destination_gets_its_connection_limit_and_no_more() {
    let r = Rc::new(Recorder::new(Duration::from_secs(1)));
    let (limits, _stop) = limits(3, 100, 1000);
    let to = route("example.com");
    schedule(r.clone(), limits, async |tx| {
        for id in 0..20 {
            tx.send(job(id, &to)).unwrap();
        }
    })
    .await;
    assert_eq!(r.opens(), 3, "{:?}", r.events());
    assert_eq!(r.most_open.get(), 3);
    assert_eq!(r.settled(), (0..20).map(|id| (id, "accepted")).collect::<Vec<_>>());
    // 20 jobs of 1 s over 3 connections: the last ends at 7 s, and each
    // connection quits after its idle wait.
    let quits: Vec<Duration> = r
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Quit { at, .. } => Some(*at),
            _ => None,
        })
        .collect();
    assert_eq!(quits.len(), 3);
    assert!(quits.iter().all(|at| *at <= Duration::from_secs(7) + IDLE), "{quits:?}");
    assert!(quits.contains(&(Duration::from_secs(7) + IDLE)), "{quits:?}");
}

#[tokio::test(start_paused = true)]
async fn a_connection_carries_at_most_its_message_limit() {
    let r = Rc::new(Recorder::new(Duration::from_millis(100)));
    let (limits, _stop) = limits(1, 4, 1000);
    let to = route("example.com");
    schedule(r.clone(), limits, async |tx| {
        for id in 0..10 {
            tx.send(job(id, &to)).unwrap();
        }
    })
    .await;
    assert_eq!(r.per_connection(), [vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
    assert_eq!(r.settled().len(), 10);
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_reused_within_its_wait_and_closed_after() {
    let r = Rc::new(Recorder::new(Duration::from_millis(100)));
    let (limits, _stop) = limits(10, 100, 1000);
    let to = route("example.com");
    schedule(r.clone(), limits, async |tx| {
        tx.send(job(0, &to)).unwrap();
        // Within the idle wait: the same connection takes it.
        tokio::time::sleep(IDLE - Duration::from_secs(1)).await;
        tx.send(job(1, &to)).unwrap();
        // Long after the wait: a new connection.
        tokio::time::sleep(IDLE * 3).await;
        tx.send(job(2, &to)).unwrap();
    })
    .await;
    assert_eq!(r.per_connection(), [vec![0, 1], vec![2]], "{:?}", r.events());
    let sent_1 = IDLE - Duration::from_secs(1) + Duration::from_millis(100);
    assert!(
        r.events().contains(&Event::Quit {
            connection: 0,
            at: sent_1 + IDLE
        }),
        "{:?}",
        r.events()
    );
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_destination_fails_its_waiting_jobs_at_once() {
    let mut recorder = Recorder::new(Duration::from_millis(100));
    let dead = route("dead.example");
    recorder.unreachable.push(dead.clone());
    let r = Rc::new(recorder);
    let (limits, _stop) = limits(2, 100, 1000);
    let alive = route("example.com");
    schedule(r.clone(), limits, async |tx| {
        for id in 0..5 {
            tx.send(job(id, &dead)).unwrap();
        }
        tx.send(job(5, &alive)).unwrap();
    })
    .await;
    assert_eq!(
        r.settled(),
        [
            (0, "error"),
            (1, "error"),
            (2, "error"),
            (3, "error"),
            (4, "error"),
            (5, "accepted")
        ]
    );
    // Nothing was sent to the dead destination; the other one is unaffected.
    assert_eq!(r.per_connection(), [vec![5]]);
}

#[tokio::test(start_paused = true)]
async fn a_broken_connection_leaves_the_rest_to_a_new_one() {
    let mut recorder = Recorder::new(Duration::from_millis(100));
    recorder.breaks.push(1);
    let r = Rc::new(recorder);
    let (limits, _stop) = limits(1, 100, 1000);
    let to = route("example.com");
    schedule(r.clone(), limits, async |tx| {
        for id in 0..4 {
            tx.send(job(id, &to)).unwrap();
        }
    })
    .await;
    assert_eq!(r.per_connection(), [vec![0, 1], vec![2, 3]]);
    assert_eq!(
        r.settled(),
        [(0, "accepted"), (1, "lost"), (2, "accepted"), (3, "accepted")]
    );
}

#[tokio::test(start_paused = true)]
async fn the_delivery_connection_limit_holds_across_destinations() {
    let r = Rc::new(Recorder::new(Duration::from_secs(1)));
    let (limits, _stop) = limits(3, 100, 2);
    schedule(r.clone(), limits, async |tx| {
        for (i, domain) in ["a.example", "b.example", "c.example"].iter().enumerate() {
            for n in 0..3 {
                tx.send(job((i * 3 + n) as u64, &route(domain))).unwrap();
            }
        }
    })
    .await;
    assert_eq!(r.most_open.get(), 2, "{:?}", r.events());
    assert_eq!(r.settled().len(), 9);
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_idle_connections_without_their_wait() {
    let r = Rc::new(Recorder::new(Duration::from_millis(100)));
    let (limits, stop) = limits(1, 100, 1000);
    let to = route("example.com");
    schedule(r.clone(), limits, async |tx| {
        tx.send(job(0, &to)).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.send_replace(true);
        drop(tx);
    })
    .await;
    assert_eq!(
        r.events().last(),
        Some(&Event::Quit {
            connection: 0,
            at: Duration::from_secs(1)
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_message_rate_from_the_policy_spaces_one_domain_and_not_another() {
    let mut recorder = Recorder::new(Duration::from_millis(10));
    recorder.record_times = true;
    let r = Rc::new(recorder);
    let mut slow = CapacityRow::inheriting(1, None, DomainScope::parse("slow.example").unwrap());
    slow.message_rate = Limit::Of("60/min".parse().unwrap());
    let (limits, _stop) = limits_with(vec![slow], 10, 100, 1000);
    let (slow_route, fast_route) = (route("slow.example"), route("fast.example"));
    schedule(r.clone(), limits, async |tx| {
        for id in 0..5 {
            tx.send(job_to(id, &slow_route, "slow.example")).unwrap();
            tx.send(job_to(100 + id, &fast_route, "fast.example")).unwrap();
        }
    })
    .await;
    let times = r.times.borrow().clone();
    let slow_at: Vec<Duration> = times.iter().filter(|(job, _)| *job < 100).map(|(_, t)| *t).collect();
    let fast_at: Vec<Duration> = times.iter().filter(|(job, _)| *job >= 100).map(|(_, t)| *t).collect();
    // One a second, the first at once; waiting is not an attempt.
    assert_eq!(
        slow_at,
        (0..5).map(|s| Duration::from_secs(s) + slow_at[0]).collect::<Vec<_>>()
    );
    assert!(slow_at[0] < Duration::from_secs(1));
    // The other domain did not wait for it.
    assert!(fast_at.iter().all(|t| *t < Duration::from_secs(1)), "{fast_at:?}");
    assert_eq!(r.settled().len(), 10);
}

#[tokio::test(start_paused = true)]
async fn a_domain_waiting_for_its_rate_does_not_hold_the_others_of_its_mx_set() {
    let mut recorder = Recorder::new(Duration::from_millis(10));
    recorder.record_times = true;
    let r = Rc::new(recorder);
    let mut slow = CapacityRow::inheriting(1, None, DomainScope::parse("slow.example").unwrap());
    slow.message_rate = Limit::Of("60/min".parse().unwrap());
    // One connection: every job of the route goes over it, in one line before this change.
    let (limits, _stop) = limits_with(vec![slow], 1, 100, 1000);
    // Both domains have the same MX host: one route.
    let shared = route("mx.shared.example");
    schedule(r.clone(), limits, async |tx| {
        for id in 0..5 {
            tx.send(job_to(id, &shared, "slow.example")).unwrap();
        }
        for id in 100..105 {
            tx.send(job_to(id, &shared, "fast.example")).unwrap();
        }
    })
    .await;
    let times = r.times.borrow().clone();
    let slow_at: Vec<Duration> = times.iter().filter(|(job, _)| *job < 100).map(|(_, t)| *t).collect();
    let fast_at: Vec<Duration> = times.iter().filter(|(job, _)| *job >= 100).map(|(_, t)| *t).collect();
    assert_eq!((slow_at.len(), fast_at.len()), (5, 5));
    // The fast domain's five went while the slow one waited for its second.
    assert!(
        fast_at.iter().all(|t| *t < slow_at[1]),
        "fast {fast_at:?} slow {slow_at:?}"
    );
    // The slow one kept its pace: one a second.
    for pair in slow_at.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_secs(1), "{slow_at:?}");
    }
    assert_eq!(r.opens(), 1, "one connection carried both: {:?}", r.events());
    assert_eq!(r.settled().len(), 10);
}

#[tokio::test(start_paused = true)]
async fn a_slow_rate_gives_the_connection_up_and_opens_one_when_due() {
    let mut recorder = Recorder::new(Duration::from_millis(10));
    recorder.record_times = true;
    let r = Rc::new(recorder);
    let mut slow = CapacityRow::inheriting(1, None, DomainScope::parse("slow.example").unwrap());
    // One a minute: far beyond the idle wait.
    slow.message_rate = Limit::Of("1/min".parse().unwrap());
    let (limits, _stop) = limits_with(vec![slow], 10, 100, 1000);
    let to = route("slow.example");
    schedule(r.clone(), limits, async |tx| {
        for id in 0..3 {
            tx.send(job_to(id, &to, "slow.example")).unwrap();
        }
    })
    .await;
    let times: Vec<Duration> = r.times.borrow().iter().map(|(_, t)| *t).collect();
    assert_eq!(times.len(), 3);
    assert!(
        times[1] - times[0] >= Duration::from_secs(60) && times[2] - times[1] >= Duration::from_secs(60),
        "{times:?}"
    );
    // No connection is held through a minute's wait, and none is opened early.
    assert_eq!(r.opens(), 3, "{:?}", r.events());
}

#[tokio::test(start_paused = true)]
async fn capacity_connections_from_the_policy_cap_a_destination() {
    let r = Rc::new(Recorder::new(Duration::from_secs(1)));
    let mut two = CapacityRow::inheriting(1, None, DomainScope::parse("example.com").unwrap());
    two.connections = Limit::Of(2);
    let (limits, _stop) = limits_with(vec![two], 10, 100, 1000);
    let to = route("example.com");
    schedule(r.clone(), limits, async |tx| {
        for id in 0..10 {
            tx.send(job_to(id, &to, "example.com")).unwrap();
        }
    })
    .await;
    assert_eq!(r.most_open.get(), 2, "{:?}", r.events());
    assert_eq!(r.settled().len(), 10);
}
