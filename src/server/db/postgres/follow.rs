//! Following what every process commits: a dedicated connection LISTENs on the channel that
//! each batch NOTIFYs in its own transaction, wakes this process's event-stream listeners, and
//! drops the cached tokens of a team whose tokens, members or roles changed.
//!
//! Notifications only say "look again": listeners read events from the table by cursor. So a
//! lost connection costs event streams nothing but time: after reconnecting every listener looks
//! again, and every [`POLL`] the counters of the teams listened to here are read in case a
//! notification was missed anyway. The token cache is trusted only while the connection is up:
//! it is emptied when the connection is lost, kept empty until LISTEN works again, and the
//! connection is checked every [`POLL`] (answering within [`POLL`]), so a connection that died
//! silently is given up within two of them.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::AsyncMessage;

use super::auth_cache::AuthCache;
use super::{CHANNEL, Signal, Target, describe, signal};
use crate::server::events::{LocalNotifier, Notifier};

/// How often the teams' counters are read, whatever the notifications said.
pub const POLL: Duration = Duration::from_secs(3);
/// Waits between attempts to reconnect, growing to the last.
const BACKOFF: [Duration; 5] = [
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// The `application_name` of the listening connection (`marginalia`'s other connections have
/// `marginalia`, unless the URL names another).
pub const APPLICATION: &str = "marginalia listener";

/// Runs until `notifier` is dropped.
pub async fn run(target: Target, notifier: Weak<LocalNotifier>, auth: Arc<AuthCache>) {
    let mut failures = 0usize;
    loop {
        if notifier.strong_count() == 0 {
            return;
        }
        let outcome = listen(&target, &notifier, &auth).await;
        auth.listening(false);
        match outcome {
            Ok(()) => return,
            Err(e) => {
                if failures == 0 {
                    tracing::warn!("event wake-ups from {}: {e}; reconnecting", target.place);
                } else {
                    tracing::debug!("event wake-ups from {}: {e}; reconnecting", target.place);
                }
                tokio::time::sleep(BACKOFF[failures.min(BACKOFF.len() - 1)]).await;
                failures += 1;
            }
        }
    }
}

/// One connection's life: `Ok` when the notifier is gone, `Err` when the connection is.
async fn listen(target: &Target, notifier: &Weak<LocalNotifier>, auth: &Arc<AuthCache>) -> Result<(), String> {
    let mut config = target.config.clone();
    if config.get_application_name().is_none_or(|name| name == "marginalia") {
        config.application_name(APPLICATION);
    }
    let (client, mut connection) =
        config.connect(target.tls.clone()).await.map_err(|e| format!("cannot connect: {}", describe(&e)))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cache = auth.clone();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    // Cached tokens are dropped here, as soon as told, rather than after the
                    // wake-ups queued before (and before the team's streams are woken to check
                    // their tokens again).
                    if let Some(Signal::Poke(team) | Signal::Closed(team)) = signal(n.payload()) {
                        cache.forget_team(team);
                    }
                    if tx.send(Ok(n.payload().to_string())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(describe(&e)));
                    return;
                }
            }
        }
        let _ = tx.send(Err("the connection ended".to_string()));
    });
    let result = async {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(|e| format!("cannot LISTEN: {}", describe(&e)))?;
        tracing::debug!("listening for changes on {}", target.place);
        auth.listening(true);
        // Whatever was committed while no one listened: everyone looks again.
        match notifier.upgrade() {
            Some(n) => n.poke_all(),
            None => return Ok(()),
        }
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = rx.recv() => {
                    let payload = message.unwrap_or_else(|| Err("the connection ended".into()))?;
                    let Some(n) = notifier.upgrade() else { return Ok(()) };
                    match signal(&payload) {
                        Some(Signal::Events(team, seq)) => n.notify(team, seq),
                        Some(Signal::Poke(team)) => n.poke(team),
                        Some(Signal::Closed(team)) => n.close(team),
                        None => tracing::debug!("an unknown notification: {payload:?}"),
                    }
                }
                _ = poll.tick() => {
                    let Some(n) = notifier.upgrade() else { return Ok(()) };
                    // Also the check that the connection still answers (see the module's doc).
                    let teams = n.listened();
                    let rows = tokio::time::timeout(
                        POLL,
                        client.query("SELECT team_id, last_seq FROM event_counters WHERE team_id = ANY($1)", &[&teams]),
                    )
                    .await
                    .map_err(|_| format!("the connection did not answer within {POLL:?}"))?
                    .map_err(|e| format!("cannot read the event counters: {}", describe(&e)))?;
                    for r in rows {
                        n.notify(r.get(0), r.get(1));
                    }
                }
            }
        }
    }
    .await;
    driver.abort();
    result
}
