//! Telling event-stream listeners that their team has news. A [`Notifier`] carries only "look
//! again" (with the newest sequence number): listeners read the events themselves from storage,
//! so a wake-up that is missed or merged loses nothing. [`LocalNotifier`] wakes the listeners of
//! this process; with several server processes on PostgreSQL, `db::postgres` feeds it from
//! LISTEN/NOTIFY (and a slow poll), so a change made through one process wakes every process's
//! listeners.

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

impl LocalNotifier {
    /// The teams someone listens to here.
    pub fn listened(&self) -> Vec<String> {
        let teams = self.teams.lock().unwrap_or_else(|p| p.into_inner());
        teams.iter().filter(|(_, s)| s.receiver_count() > 0).map(|(t, _)| t.clone()).collect()
    }

    /// Wakes every listener (news may have been missed: they all look again).
    pub fn poke_all(&self) {
        let mut teams = self.teams.lock().unwrap_or_else(|p| p.into_inner());
        teams.retain(|_, s| s.receiver_count() > 0);
        for s in teams.values() {
            s.send_modify(|_| {});
        }
    }
}

impl Notifier for LocalNotifier {
    /// Wakes the team's listeners unless they were woken for `seq` or a later event already
    /// (the same commit is told by the committing request and again by the database).
    fn notify(&self, team_id: &str, seq: i64) {
        self.with(team_id, |s| {
            s.send_if_modified(|newest| {
                let news = seq > *newest;
                *newest = (*newest).max(seq);
                news
            });
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
        n.notify("a", 5);
        n.notify("a", 3);
        assert!(!a.has_changed().unwrap(), "an event told twice, or an older one, wakes no one again");
        n.poke_all();
        assert!(a.has_changed().unwrap() && b.has_changed().unwrap());
        assert_eq!(n.listened().len(), 2);
        b.borrow_and_update();
        n.close("b");
        assert!(b.changed().await.is_err());
    }
}
