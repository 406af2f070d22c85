//! Stopping the proxies without losing mail: the phases a shutdown goes
//! through and how sessions hear of them (the mini-redis `Shutdown`
//! pattern). Owns the timing only; what a session says when it closes is
//! the protocol's business.
//!
//! On SIGTERM the listeners stop accepting ([`Phase::Draining`]) and the
//! open sessions carry on. After `listen.shutdown_grace` the sessions are
//! told to close ([`Phase::Closing`]): each one finishes what it is in the
//! middle of (a started APPEND or DATA completes), says goodbye (`* BYE`,
//! `421`) and ends. A session that still has not ended after a second
//! grace period is dropped ([`Phase::Abort`]), so a silent upstream cannot
//! keep the process alive.

use std::time::Duration;

use tokio::sync::watch;

/// How far a shutdown has come. Phases only move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Serving normally.
    Running,
    /// Not accepting; open sessions continue.
    Draining,
    /// Sessions close at their next safe point.
    Closing,
    /// Sessions that are still open are dropped.
    Abort,
}

/// Starts a shutdown and moves it through its phases.
pub struct ShutdownTrigger {
    phase: watch::Sender<Phase>,
}

/// What a session or listener watches to learn the shutdown phase.
#[derive(Clone)]
pub struct Shutdown {
    phase: watch::Receiver<Phase>,
}

/// A trigger and the first receiver of its phases.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(Phase::Running);
    (ShutdownTrigger { phase: tx }, Shutdown { phase: rx })
}

impl ShutdownTrigger {
    /// Drains, waits `grace`, tells sessions to close, waits `grace` again
    /// and aborts what is left.
    pub async fn run(self, grace: Duration) {
        self.set(Phase::Draining);
        tokio::time::sleep(grace).await;
        tracing::info!(grace_seconds = grace.as_secs_f64(), "grace period over; closing open sessions");
        self.set(Phase::Closing);
        tokio::time::sleep(grace).await;
        self.set(Phase::Abort);
    }

    /// Moves to `phase` (never backwards).
    pub fn set(&self, phase: Phase) {
        self.phase.send_if_modified(|current| {
            let later = phase > *current;
            if later {
                *current = phase;
            }
            later
        });
    }
}

impl Shutdown {
    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Waits until the shutdown has reached `phase` (at once if it has).
    /// Waits forever when nobody can trigger a shutdown any more.
    pub async fn reached(&mut self, phase: Phase) {
        if self.phase.wait_for(|p| *p >= phase).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn phases_follow_the_grace_periods() {
        let (trigger, shutdown) = channel();
        assert_eq!(shutdown.phase(), Phase::Running);
        let run = tokio::spawn(trigger.run(Duration::from_secs(10)));
        let mut watcher = shutdown.clone();
        watcher.reached(Phase::Draining).await;
        let start = tokio::time::Instant::now();
        watcher.reached(Phase::Closing).await;
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        watcher.reached(Phase::Abort).await;
        assert_eq!(start.elapsed(), Duration::from_secs(20));
        run.await.unwrap();
        assert_eq!(shutdown.phase(), Phase::Abort);
    }

    #[test]
    fn phases_never_go_back() {
        let (trigger, shutdown) = channel();
        trigger.set(Phase::Closing);
        trigger.set(Phase::Draining);
        assert_eq!(shutdown.phase(), Phase::Closing);
    }
}
