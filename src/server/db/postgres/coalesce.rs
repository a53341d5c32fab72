//! Work gathered into groups ([`Groups`]): while a kind of work holds all its turns, the jobs
//! that arrive wait, and whoever gets the next turn takes every waiting job as one group. Alone,
//! a job goes at once; under load, dozens share one group. Commits use it (group commit: one
//! transaction, one flush of the WAL), and so do reads of one codemark ([`Coalesced`]: dozens
//! share one statement's round trip and fixed cost in the database). A group starts after every
//! job it carries arrived, so a read still sees every write acknowledged before it.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, oneshot};

use crate::server::db::DbError;

/// Jobs waiting for a turn, each with where its outcome goes.
pub type Group<J, O> = Vec<(J, oneshot::Sender<O>)>;

pub struct Groups<J, O> {
    waiting: Mutex<Group<J, O>>,
    turns: Arc<Semaphore>,
}

impl<J, O> Groups<J, O> {
    /// At most `turns` groups at once.
    pub fn new(turns: usize) -> Groups<J, O> {
        Groups { waiting: Mutex::new(Vec::new()), turns: Arc::new(Semaphore::new(turns.max(1))) }
    }

    /// Queues `job` and answers its outcome, from whichever group took it. `run` gets a whole
    /// group and must send each job's outcome; what it returns runs on a task of its own, so a
    /// request that goes away (its client hung up) does not leave the others it took along
    /// without answers. `Err` says why no outcome came.
    pub async fn join<F, Fut>(&self, job: J, run: F) -> Result<O, String>
    where
        F: FnOnce(Group<J, O>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (answer, mut outcome) = oneshot::channel();
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).push((job, answer));
        let ended = || "the group it went with ended without an answer".to_owned();
        let turn = self.turns.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        // The groups before ours may have taken ours with them.
        match outcome.try_recv() {
            Ok(o) => return Ok(o),
            Err(oneshot::error::TryRecvError::Closed) => return Err(ended()),
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let group = std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|p| p.into_inner()));
        if group.is_empty() {
            // A group still running on another turn took ours: its answer comes from there.
            drop(turn);
        } else {
            let work = run(group);
            tokio::spawn(async move {
                work.await;
                drop(turn);
            });
        }
        outcome.await.map_err(|_| ended())
    }
}

/// Point reads by key, gathered: each group is one statement for all of its keys.
pub struct Coalesced<K, V> {
    groups: Groups<K, Result<Option<V>, DbError>>,
    /// The database, without its password, for errors.
    place: String,
}

impl<K, V> Coalesced<K, V>
where
    K: Clone + Eq + Hash + Send + 'static,
    V: Clone + Send + 'static,
{
    /// At most `turns` statements of this kind at once, on the database at `place`.
    pub fn new(turns: usize, place: &str) -> Coalesced<K, V> {
        Coalesced { groups: Groups::new(turns), place: place.to_owned() }
    }

    /// The value of `key`, `None` when there is none. `read` gets every waiting key (each
    /// once) and answers the found ones with their values.
    pub async fn get<F, Fut>(&self, key: K, read: F) -> Result<Option<V>, DbError>
    where
        F: FnOnce(Vec<K>) -> Fut,
        Fut: Future<Output = Result<Vec<(K, V)>, DbError>> + Send + 'static,
    {
        let place = self.place.clone();
        let run = |group: Group<K, Result<Option<V>, DbError>>| {
            let mut keys: Vec<K> = Vec::with_capacity(group.len());
            for (k, _) in &group {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
            let statement = read(keys);
            async move {
                match statement.await {
                    Ok(found) => {
                        let found: HashMap<K, V> = found.into_iter().collect();
                        for (k, answer) in group {
                            let _ = answer.send(Ok(found.get(&k).cloned()));
                        }
                    }
                    Err(e) => {
                        for (_, answer) in group {
                            let _ = answer.send(Err(copy(&e, &place)));
                        }
                    }
                }
            }
        };
        self.groups.join(key, run).await.unwrap_or_else(|cause| {
            Err(DbError::Backend { path: self.place.clone().into(), context: "could not read".into(), cause })
        })
    }
}

/// The same failure again, for each request that shared the statement.
fn copy(e: &DbError, place: &str) -> DbError {
    match e {
        DbError::Unavailable { place, context, cause } => {
            DbError::Unavailable { place: place.clone(), context: context.clone(), cause: cause.clone() }
        }
        DbError::Backend { path, context, cause } => {
            DbError::Backend { path: path.clone(), context: context.clone(), cause: cause.clone() }
        }
        other => DbError::Backend { path: place.into(), context: "could not read".into(), cause: other.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_arriving_together_share_statements_and_each_gets_its_own_answer() {
        for turns in [1, 2] {
            let gathered = Arc::new(Coalesced::<u32, String>::new(turns, "test"));
            let statements = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..64u32)
                .map(|i| {
                    let (gathered, statements) = (gathered.clone(), statements.clone());
                    tokio::spawn(async move {
                        let read = move |keys: Vec<u32>| {
                            assert!(!keys.is_empty(), "a statement for nobody");
                            statements.fetch_add(1, Ordering::Relaxed);
                            async move {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                // Odd keys exist; even ones do not.
                                Ok(keys.into_iter().filter(|k| k % 2 == 1).map(|k| (k, format!("value {k}"))).collect())
                            }
                        };
                        // Two requests for each key: both are answered.
                        (i, gathered.get(i / 2, read).await.unwrap())
                    })
                })
                .collect();
            for t in tasks {
                let (i, got) = t.await.unwrap();
                let key = i / 2;
                assert_eq!(got, (key % 2 == 1).then(|| format!("value {key}")), "request {i}, {turns} turns");
            }
            let n = statements.load(Ordering::Relaxed);
            assert!((1..64).contains(&n), "{n} statements for 64 reads, {turns} turns");
        }
    }

    #[tokio::test]
    async fn a_failed_statement_fails_every_read_it_carried() {
        let gathered = Arc::new(Coalesced::<u32, u32>::new(1, "test"));
        let started = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        // The first read holds the only turn until released; three more wait meanwhile and go
        // together in the next statement, which fails.
        let first = {
            let (gathered, started, release) = (gathered.clone(), started.clone(), release.clone());
            tokio::spawn(async move {
                gathered
                    .get(0, move |_| async move {
                        started.notify_one();
                        release.notified().await;
                        Ok(vec![(0, 0)])
                    })
                    .await
            })
        };
        started.notified().await;
        let failing = |_: Vec<u32>| async {
            Err(DbError::Unavailable { place: "db".into(), context: "reading".into(), cause: "gone".into() })
        };
        let others: Vec<_> = (1..4u32)
            .map(|k| {
                let gathered = gathered.clone();
                tokio::spawn(async move { gathered.get(k, failing).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap(), Some(0));
        for o in others {
            match o.await.unwrap() {
                Err(DbError::Unavailable { cause, .. }) => assert_eq!(cause, "gone"),
                other => panic!("expected the statement's failure, got {other:?}"),
            }
        }
    }
}
