//! Signed-in operators: a random session id (the cookie) maps to its CSRF token and expiry.
//! Kept in memory: a restart signs everyone out, which is the safe direction.

use super::csrf;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a sign-in lasts (also the cookie's Max-Age).
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at most; the oldest go first.
const MAX_SESSIONS: usize = 256;

#[derive(Clone)]
pub struct Session {
    pub csrf: String,
    expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session: its id (for the cookie).
    pub fn create(&self, now: Instant) -> String {
        let id = csrf::new_token();
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        while map.len() >= MAX_SESSIONS {
            let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                csrf: csrf::new_token(),
                expires: now + LIFETIME,
            },
        );
        id
    }

    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        self.lock().get(id).filter(|s| s.expires > now).cloned()
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_end() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let id = s.create(t0);
        assert!(s.get(&id, t0).is_some());
        assert!(s.get(&id, t0 + LIFETIME).is_none());
        s.remove(&id);
        assert!(s.get(&id, t0).is_none());
        assert!(s.get("made-up", t0).is_none());
    }
}
