//! Login sessions: one per `authsome login` that needs the browser (or a device flow handed to
//! the daemon by `--no-wait`). In memory: a restarted daemon forgets them, and the CLI that was
//! waiting says so (upstream bug 19 asks for "survive restarts or fail clearly").
//!
//! A session's browser URL carries a one-time capability: the first browser that opens it is
//! bound to the session by a random cookie, and every later page of the session needs that
//! cookie. The URL may be seen by other local users (it is in the browser opener's argv), but
//! once opened it is worth nothing to them.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::auth::ClientCredentials;
use crate::auth::code::Authorization;
use crate::auth::pkce::{constant_time_eq, random_token};
use crate::error::{CliError, Kind};
use crate::providers::{Flow, Provider};

/// Browser sessions live this long (upstream: 300 s; a first-time OAuth app setup takes longer).
pub(crate) const SESSION_TTL: i64 = 900;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    WaitingForUser,
    Processing,
    Completed,
    Failed,
    Expired,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::WaitingForUser => "waiting_for_user",
            Status::Processing => "processing",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Expired => "expired",
        }
    }
    pub(crate) fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Expired)
    }
}

/// What the browser form must still collect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    Nothing,
    ClientCredentials,
    ApiKey,
}

/// A device flow's user-facing half.
#[derive(Debug, Clone)]
pub(crate) struct DeviceInfo {
    pub(crate) user_code: String,
    pub(crate) verification_uri: String,
    pub(crate) verification_uri_complete: Option<String>,
}

pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) profile: String,
    pub(crate) provider: Provider,
    pub(crate) connection: String,
    pub(crate) flow: Flow,
    pub(crate) scopes: Vec<String>,
    pub(crate) base_url: Option<String>,
    pub(crate) status: Status,
    pub(crate) message: Option<String>,
    pub(crate) error: Option<CliError>,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) csrf: String,
    /// The capability in the URL the login opens (`/auth/sessions/ID/open/CAPABILITY`).
    pub(crate) capability: String,
    /// The cookie value of the browser that opened the URL first (see the module doc).
    pub(crate) binding: Option<String>,
    pub(crate) need: Need,
    pub(crate) authorization: Option<Authorization>,
    pub(crate) client: Option<ClientCredentials>,
    pub(crate) device: Option<DeviceInfo>,
}

impl Session {
    pub(crate) fn new(profile: &str, provider: Provider, connection: &str, flow: Flow) -> Self {
        let now = authsome_vault::time::now_seconds();
        Self {
            id: format!("sess_{}", random_token(16)),
            profile: profile.to_string(),
            provider,
            connection: connection.to_string(),
            flow,
            scopes: Vec::new(),
            base_url: None,
            status: Status::WaitingForUser,
            message: None,
            error: None,
            created_at: now,
            expires_at: now + SESSION_TTL,
            csrf: random_token(32),
            capability: random_token(32),
            binding: None,
            need: Need::Nothing,
            authorization: None,
            client: None,
            device: None,
        }
    }

    /// Bind the session to the browser opening `capability`: the binding cookie's value, the
    /// first time only; the same browser (its cookie) may open the link again.
    pub(crate) fn open(&mut self, capability: &str, cookie: Option<&str>) -> Option<String> {
        match &self.binding {
            None if constant_time_eq(capability, &self.capability) => {
                let binding = random_token(32);
                self.binding = Some(binding.clone());
                Some(binding)
            }
            Some(binding) if self.is_bound_to(cookie) => Some(binding.clone()),
            _ => None,
        }
    }

    /// Whether `cookie` is the binding cookie of the browser that opened the session.
    pub(crate) fn is_bound_to(&self, cookie: Option<&str>) -> bool {
        matches!((&self.binding, cookie), (Some(binding), Some(cookie)) if constant_time_eq(binding, cookie))
    }

    pub(crate) fn fail(&mut self, error: CliError) {
        self.status = Status::Failed;
        self.message = Some(error.message.clone());
        self.error = Some(error);
        self.authorization = None;
    }

    /// The session document of the API (upstream's shape plus `hint`, `causes`, `device`).
    pub(crate) fn to_json(&self, base: &str) -> Value {
        let next_action = if self.status == Status::WaitingForUser && self.device.is_none() {
            json!({"type": "open_url", "url": format!("{base}/auth/sessions/{}/open/{}", self.id, self.capability)})
        } else {
            json!({"type": "none"})
        };
        let mut doc = json!({
            "id": self.id,
            "provider": self.provider.name,
            "connection": self.connection,
            "flow": self.flow.as_str(),
            "status": self.status.as_str(),
            "message": self.message,
            "error": self.error.as_ref().map(|e| e.kind.class_name()),
            "created_at": authsome_vault::time::iso_z_seconds(self.created_at),
            "expires_at": authsome_vault::time::iso_z_seconds(self.expires_at),
            "next_action": next_action,
        });
        if let Some(error) = &self.error {
            doc["causes"] = error.causes.clone().into();
            doc["hint"] = error.hint.clone().into();
        }
        if let Some(device) = &self.device {
            doc["device"] = json!({
                "user_code": device.user_code,
                "verification_uri": device.verification_uri,
                "verification_uri_complete": device.verification_uri_complete,
            });
        }
        doc
    }
}

/// All sessions of the daemon. The lock is never held across an await.
#[derive(Default)]
pub(crate) struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub(crate) fn insert(&self, session: Session) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = authsome_vault::time::now_seconds();
        // Forget sessions that ended or expired over an hour ago.
        map.retain(|_, s| s.expires_at + 3_600 > now);
        map.insert(session.id.clone(), session);
    }

    /// Run `f` on a session (expired ones are marked so first).
    pub(crate) fn with<T>(&self, id: &str, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let session = map.get_mut(id)?;
        if !session.status.is_final() && session.expires_at <= authsome_vault::time::now_seconds() {
            session.status = Status::Expired;
            session.authorization = None;
            session.error = Some(
                CliError::new(Kind::AuthenticationFailed, "the login session expired before it was completed")
                    .hint("start the login again"),
            );
        }
        Some(f(session))
    }

    /// The session waiting for the callback with this `state`; its authorization is taken out,
    /// so a state works once.
    pub(crate) fn take_by_state(&self, state: &str) -> Option<(String, Authorization)> {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = authsome_vault::time::now_seconds();
        let session = map.values_mut().find(|s| {
            s.status == Status::WaitingForUser
                && s.expires_at > now
                && s.authorization.as_ref().is_some_and(|a| constant_time_eq(&a.state, state))
        })?;
        let authorization = session.authorization.take()?;
        session.status = Status::Processing;
        Some((session.id.clone(), authorization))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Catalog;

    #[test]
    fn the_first_opener_binds_the_session() {
        let openai = Catalog::bundled_only().get("openai").unwrap().provider.clone();
        let mut session = Session::new("default", openai, "default", Flow::ApiKey);
        let capability = session.capability.clone();
        assert!(!session.is_bound_to(None));
        assert_eq!(session.open("wrong", None), None);
        let binding = session.open(&capability, None).expect("the first opener is bound");
        assert!(session.is_bound_to(Some(&binding)));
        assert!(!session.is_bound_to(Some("other")) && !session.is_bound_to(None));
        assert_eq!(session.open(&capability, None), None, "a second browser gets nothing");
        assert_eq!(session.open(&capability, Some("other")), None);
        assert_eq!(session.open(&capability, Some(&binding)), Some(binding), "the bound browser may reopen");
    }
}
