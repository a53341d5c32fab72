//! Following what every process commits: a dedicated connection LISTENs on the channel that
//! each batch NOTIFYs in its own transaction, and wakes this process's event-stream listeners.
//!
//! Notifications only say "look again": listeners read events from the table by cursor. So a
//! lost connection costs nothing but time: after reconnecting every listener looks again, and
//! every [`POLL`] the counters of the teams listened to here are read in case a notification was
//! missed anyway.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::AsyncMessage;

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

/// Runs until `notifier` is dropped.
pub async fn run(target: Target, notifier: Weak<LocalNotifier>) {
    let mut failures = 0usize;
    loop {
        if notifier.strong_count() == 0 {
            return;
        }
        match listen(&target, &notifier).await {
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
async fn listen(target: &Target, notifier: &Weak<LocalNotifier>) -> Result<(), String> {
    let (client, mut connection) =
        target.config.connect(target.tls.clone()).await.map_err(|e| format!("cannot connect: {}", describe(&e)))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
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
                    let teams = n.listened();
                    if teams.is_empty() {
                        continue;
                    }
                    let rows = client
                        .query("SELECT team_id, last_seq FROM event_counters WHERE team_id = ANY($1)", &[&teams])
                        .await
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
