//! Dashboard sessions (`domain::session`): opened with an admin key, read back on every
//! request together with that key, ended at logout.
//!
//! Unlike API keys, a session is read from the database on every request, uncached: the
//! dashboard is a handful of page loads, and a logout or a key revoked on another replica
//! then ends the session at once everywhere.

use super::{Engine, EngineError};
use crate::domain::{
    DomainError,
    auth::{Caller, Role},
    session::{self, ABSOLUTE_TTL, DashboardSession, IDLE_TTL, NewSession},
};

/// What a live session gives the request that presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    /// The admin key the session was opened with, as the engine's caller.
    pub caller: Caller,
    /// The token every form of the session must send back.
    pub csrf_token: String,
}

impl Engine {
    /// Opens a session for an admin `caller` (authenticated by its key) and returns the new
    /// session id, the only time it is seen, with the stored session. Sessions that have ended
    /// are deleted on the way, so that the table holds about the open ones.
    pub async fn open_session(&self, caller: &Caller) -> Result<NewSession, EngineError> {
        if caller.role != Role::Admin {
            return Err(
                DomainError::PermissionDenied("the dashboard is for admin keys".into()).into(),
            );
        }
        let now = self.now();
        let opened = DashboardSession::open(&caller.key_id, now);
        // Session bookkeeping is no ledger write: a unit of work of its own, not the writer's.
        let mut uow = self.store().begin().await?;
        uow.purge_dashboard_sessions(now - ABSOLUTE_TTL, now - IDLE_TTL)
            .await?;
        uow.insert_dashboard_session(&opened.session).await?;
        uow.commit().await?;
        Ok(opened)
    }

    /// The live session `session_id` names; None when there is none, it has ended (idle or
    /// too old), or its key is revoked, expired or not an admin's.
    pub async fn session(&self, session_id: &str) -> Result<Option<LiveSession>, EngineError> {
        let session_hash = session::hash_of(session_id);
        let mut uow = self.store().begin_read().await?;
        let found = uow.find_dashboard_session(&session_hash).await?;
        drop(uow);
        let now = self.now();
        let Some((session, key)) = found else {
            return Ok(None);
        };
        let key_refused = key.revoked_at.is_some()
            || key.expires_at.is_some_and(|at| at <= now)
            || key.role != Role::Admin;
        if key_refused || !session.is_live(now) {
            return Ok(None);
        }
        if session.due_for_touch(now) {
            let mut uow = self.store().begin().await?;
            uow.touch_dashboard_session(&session_hash, now).await?;
            uow.commit().await?;
        }
        Ok(Some(LiveSession {
            caller: Caller {
                key_id: key.key_id,
                role: key.role,
                store_id: key.store_id,
            },
            csrf_token: session.csrf_token,
        }))
    }

    /// Ends a session (logout); false when there was none.
    pub async fn end_session(&self, session_id: &str) -> Result<bool, EngineError> {
        let session_hash = session::hash_of(session_id);
        let mut uow = self.store().begin().await?;
        let ended = uow.delete_dashboard_session(&session_hash).await?;
        uow.commit().await?;
        Ok(ended)
    }
}
