//! A few seconds' memory of the API's answers. Every open dashboard tab
//! asks the same questions every 5 s, and one answer costs Kubernetes
//! lists and up to 30 Prometheus queries; with this, tabs share answers:
//! one younger than [`FRESH_FOR`] is served again, and a request for an
//! answer being worked out waits for it instead of asking again. At most
//! [`MAX_ANSWERS`] are kept (a request beyond is answered, not kept), so
//! a stream of made-up parameters cannot grow it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// How long an answer is served again: under the page's 5 s refresh, so
/// that each refresh sees new figures.
pub const FRESH_FOR: Duration = Duration::from_secs(4);

/// Answers kept at most.
pub const MAX_ANSWERS: usize = 1024;

/// One answer: its status and JSON body.
pub type Answer = (StatusCode, Bytes);

/// One answer's place: filled once, by whoever asks first.
pub type Slot = Arc<OnceCell<Answer>>;

/// The answers of the last few seconds, by endpoint and parameters.
#[derive(Debug, Default)]
pub struct Answers {
    slots: Mutex<HashMap<String, (Instant, Slot)>>,
}

impl Answers {
    /// The slot of `key`: a fresh one already there, else a new one (kept
    /// when there is room).
    pub fn slot(&self, key: &str) -> Slot {
        let now = Instant::now();
        let Ok(mut slots) = self.slots.lock() else {
            return Slot::default();
        };
        if let Some((born, slot)) = slots.get(key)
            && now.duration_since(*born) < FRESH_FOR
        {
            return slot.clone();
        }
        if slots.len() >= MAX_ANSWERS {
            slots.retain(|_, (born, _)| now.duration_since(*born) < FRESH_FOR);
        }
        let slot = Slot::default();
        if slots.len() < MAX_ANSWERS {
            slots.insert(key.to_owned(), (now, slot.clone()));
        }
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_answer_is_shared_while_fresh_then_asked_again() {
        let answers = Answers::default();
        let first = answers.slot("namespaces?window=1m");
        first
            .set((StatusCode::OK, Bytes::from_static(b"{}")))
            .expect("empty");
        assert!(answers.slot("namespaces?window=1m").initialized());
        assert!(!answers.slot("namespaces?window=5m").initialized());
        tokio::time::advance(FRESH_FOR).await;
        assert!(!answers.slot("namespaces?window=1m").initialized());
    }

    /// Attack: a client makes up parameters to fill the dashboard's memory.
    #[tokio::test(start_paused = true)]
    async fn made_up_parameters_cannot_grow_it() {
        let answers = Answers::default();
        for i in 0..MAX_ANSWERS * 3 {
            answers.slot(&format!("workloads?namespace=n{i}"));
        }
        assert_eq!(answers.slots.lock().expect("lock").len(), MAX_ANSWERS);
        tokio::time::advance(FRESH_FOR).await;
        answers.slot("namespaces");
        assert_eq!(answers.slots.lock().expect("lock").len(), 1);
    }
}
