//! Telling event-stream listeners that their team has news. A [`Notifier`] carries only "look
//! again" (with the newest sequence number): listeners read the events themselves from storage,
//! so a wake-up that is missed or merged loses nothing. In-process now ([`LocalNotifier`]); with
//! several server processes on PostgreSQL, LISTEN/NOTIFY feeds the same trait.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

pub trait Notifier: Send + Sync + 'static {
    /// Events up to `seq` were committed for `team_id`.
    fn notify(&self, team_id: &str, seq: i64);
    /// Something other than an event happened (a token revoked, a member removed): listeners
    /// check that they may still listen.
    fn poke(&self, team_id: &str);
    /// A receiver that changes on each notification for `team_id`; it closes when the team is
    /// deleted.
    fn subscribe(&self, team_id: &str) -> watch::Receiver<i64>;
    /// The team is gone: every listener's receiver closes.
    fn close(&self, team_id: &str);
}

/// Listeners in this process, one watch channel per team.
#[derive(Default)]
pub struct LocalNotifier {
    teams: Mutex<HashMap<String, watch::Sender<i64>>>,
}

impl LocalNotifier {
    fn with<T>(&self, team_id: &str, f: impl FnOnce(&watch::Sender<i64>) -> T) -> T {
        let mut teams = self.teams.lock().unwrap_or_else(|p| p.into_inner());
        let sender = teams.entry(team_id.to_string()).or_insert_with(|| watch::channel(0).0);
        f(sender)
    }
}

impl Notifier for LocalNotifier {
    fn notify(&self, team_id: &str, seq: i64) {
        self.with(team_id, |s| {
            s.send_modify(|newest| *newest = (*newest).max(seq));
        });
    }

    fn poke(&self, team_id: &str) {
        self.with(team_id, |s| s.send_modify(|_| {}));
    }

    fn subscribe(&self, team_id: &str) -> watch::Receiver<i64> {
        self.with(team_id, |s| s.subscribe())
    }

    fn close(&self, team_id: &str) {
        self.teams.lock().unwrap_or_else(|p| p.into_inner()).remove(team_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listener_wakes_for_its_team_only_and_ends_with_it() {
        let n = LocalNotifier::default();
        let mut a = n.subscribe("a");
        let mut b = n.subscribe("b");
        n.notify("a", 5);
        a.changed().await.unwrap();
        assert_eq!(*a.borrow_and_update(), 5);
        assert!(!b.has_changed().unwrap());
        n.close("b");
        assert!(b.changed().await.is_err());
    }
}
