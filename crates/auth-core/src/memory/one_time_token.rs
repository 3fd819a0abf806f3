//! `MemoryOneTimeTokenStore`: one-time token hashes in this process, queuing their mails in
//! the store's outbox under the same lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{MemoryMailOutbox, lock};
use crate::model::{OutgoingMail, StoredToken, TokenHash, TokenPurpose, UserId};
use crate::ports::{OneTimeTokenStore, StoreError};

/// One-time tokens in memory.
#[derive(Debug)]
pub struct MemoryOneTimeTokenStore {
    tokens: Mutex<HashMap<TokenHash, StoredToken>>,
    outbox: Arc<MemoryMailOutbox>,
}

impl MemoryOneTimeTokenStore {
    /// An empty store whose mails go to `outbox`.
    #[must_use]
    pub fn new(outbox: Arc<MemoryMailOutbox>) -> Self {
        Self {
            tokens: Mutex::new(HashMap::new()),
            outbox,
        }
    }
}

#[async_trait]
impl OneTimeTokenStore for MemoryOneTimeTokenStore {
    async fn issue(&self, token: &StoredToken, mail: &OutgoingMail) -> Result<(), StoreError> {
        let mut tokens = lock(&self.tokens);
        tokens.retain(|_, t| !(t.user_id == token.user_id && t.purpose == token.purpose));
        // Under the tokens' lock: no consume sees the token before its mail is queued. The
        // memory outbox never fails, so both are stored or neither.
        self.outbox.push(mail.clone(), token.created_at);
        tokens.insert(token.hash, token.clone());
        Ok(())
    }

    async fn consume(
        &self,
        hash: &TokenHash,
        purpose: TokenPurpose,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>, StoreError> {
        let mut tokens = lock(&self.tokens);
        match tokens.get(hash) {
            Some(t) if t.purpose == purpose => {
                let t = tokens.remove(hash);
                Ok(t.filter(|t| now < t.expires_at).map(|t| t.user_id))
            }
            _ => Ok(None),
        }
    }

    async fn last_issued(
        &self,
        user: UserId,
        purpose: TokenPurpose,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(lock(&self.tokens)
            .values()
            .filter(|t| t.user_id == user && t.purpose == purpose)
            .map(|t| t.created_at)
            .max())
    }
}
