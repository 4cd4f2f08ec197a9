//! The ApiToken reconciler: reads the token, its key and its Secret, asks
//! `token_state::decide` what to do and carries it out — the value in two
//! phases (pending hash, Secret, promotion) so that a crash at any point is
//! finished or redone by the next reconcile. `secret` writes and reads the
//! Secret, `status_write` the status, `events` publishes, `restart` rolls
//! the restart targets.

mod events;
mod restart;
mod secret;
mod status_write;

use std::ops::ControlFlow::{self, Break, Continue};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use tracing::{Instrument, info};

use super::context::{BEHIND_RECHECK, Context, object_key, store_ready};
use super::error::Error;
use super::faults::FaultPoint;
use super::hashed_secret::HashedSecret;
use super::metrics::API_TOKEN;
use super::token_state::{
    self, Decision, IssueKind, KeyState, Requeue, SecretView, ValueAction, key_state,
};
use crate::api::conditions::READY;
use crate::api::{ApiKey, ApiToken, ApiTokenStatus, OwnerKind};
use crate::token::{self as tokens, TokenId, TokenKind};
use events::publish;
use restart::roll_restart_targets;
use secret::{delete_secret, desired_secret, fetch_view, sync_secret_metadata, write_secret};
use status_write::{write_status, write_status_if_changed};

/// How often a token blocked by something we do not watch is looked at again.
const BLOCKED_RECHECK: Duration = Duration::from_secs(300);
/// How long a reconcile waits for the ApiKey store's first list before retrying.
const KEY_STORE_SYNC: Duration = Duration::from_secs(5);

pub async fn reconcile(token: Arc<ApiToken>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = object_key(token.as_ref());
    if token.meta().deletion_timestamp.is_some() {
        // Secrets go with the token through their ownerReference.
        return Ok(Action::await_change());
    }
    let span =
        tracing::info_span!("reconcile", kind = API_TOKEN, object = %object_key(token.as_ref()));
    let result = reconcile_token(&token, &ctx).instrument(span).await;
    ctx.handles.metrics.reconciled(API_TOKEN, result.is_ok());
    if result.is_ok() {
        ctx.backoff.succeeded(&name);
    }
    result
}

async fn reconcile_token(token: &ApiToken, ctx: &Context) -> Result<Action, Error> {
    if ctx.behind_own_write(&object_key(token), token.resource_version().as_deref()) {
        return Ok(Action::requeue(BEHIND_RECHECK));
    }
    let ns = token
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = token.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let key = match cached_key(ctx, token, &ns).await {
        Continue(key) => key,
        Break(action) => return Ok(action),
    };
    let key_state = match adopted_key_state(ctx, token, key.as_deref()).await? {
        Continue(state) => state,
        Break(action) => return Ok(action),
    };
    let kind = match key.as_deref().map(|k| k.spec.owner.kind) {
        Some(OwnerKind::ServiceAccount) => TokenKind::ServiceAccount,
        _ => TokenKind::Personal,
    };
    let (secret_name, secret_key) = token_state::secret_target(token);
    let run = Reconciling {
        ctx,
        token,
        ns,
        uid,
        secret_name,
        secret_key,
        current: token.status.clone().unwrap_or_default(),
    };
    let (decision, secret, secret_rv) = run.decide(key_state).await?;
    let hash_now = run
        .carry_out(&decision, &secret, secret_rv.as_deref(), kind)
        .await?;
    Ok(run.follow_up(&decision, hash_now).await)
}

/// The token's key from the cache, once the cache can tell; `Break` with
/// the requeue when the decision must wait.
async fn cached_key(
    ctx: &Context,
    token: &ApiToken,
    ns: &str,
) -> ControlFlow<Action, Option<Arc<ApiKey>>> {
    let key_ref = ObjectRef::new(&token.spec.api_key_ref.name).within(ns);
    let mut key = ctx.keys.get(&key_ref);
    if key.is_none() {
        // Right after a start the key store may not have listed yet: a key
        // not seen yet must not look deleted, which would revoke the value.
        match tokio::time::timeout(KEY_STORE_SYNC, store_ready(&ctx.keys)).await {
            Ok(true) => key = ctx.keys.get(&key_ref),
            _ => return Break(Action::requeue(KEY_STORE_SYNC)),
        }
    }
    if key.is_none() && ctx.key_unreadable(&key_ref) {
        // Stored but undecodable (an Event on the key says why): not deleted,
        // so the value stays; the verifier rejects it meanwhile. The key's
        // correction wakes this token.
        return Break(Action::await_change());
    }
    let unchecked = key.as_deref().is_some_and(|k| {
        !k.status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == READY))
    });
    if unchecked {
        // A key created together with its tokens has not been reconciled yet:
        // not a problem worth a Warning. Its status write wakes us.
        return Break(ctx.requeue_at(None));
    }
    Continue(key)
}

/// The key as the decision sees it, once the key is the token's controller
/// owner; `Break` with the requeue after the adoption was written.
async fn adopted_key_state<'k>(
    ctx: &Context,
    token: &ApiToken,
    key: Option<&'k ApiKey>,
) -> Result<ControlFlow<Action, KeyState<'k>>, Error> {
    let state = key_state(key);
    let Some(key) = key.filter(|key| !adopted_by(token, key)) else {
        return Ok(Continue(state));
    };
    let uid = key.metadata.uid.as_deref().unwrap_or_default();
    let created = key.metadata.creation_timestamp.as_ref().map(|t| t.0);
    if token_state::bound_elsewhere(token, uid, created) {
        // Created for an earlier key of this name: never adopted by this one
        // (`usable_key` says what to do).
        return Ok(Continue(KeyState::Replaced));
    }
    if token.controlling_key_uid().is_some() && holds_a_value(token) {
        // The key it was issued under was deleted and one of the same
        // name created (kubectl replace --force, or a re-sync) before the
        // garbage collector took this token: that value was issued for
        // the earlier key's owner and must not pass to the new one's.
        return Ok(Continue(KeyState::Replaced));
    }
    if key.metadata.deletion_timestamp.is_some() {
        // Being deleted (perhaps orphaning its tokens): adopting now would
        // hand the token to the garbage collector after all. Blocked as a
        // key that is not Ready (see `key_state`).
        return Ok(Continue(state));
    }
    // The key becomes the token's controller owner before any value
    // exists (whether or not the key is Ready), so deleting the key
    // always takes the token and its value with it. The
    // ownerReference change wakes this token again.
    super::key::adopt(ctx, key, token).await?;
    Ok(Break(ctx.requeue_at(None)))
}

/// Whether the token's status records a value (current, pending or in grace).
fn holds_a_value(token: &ApiToken) -> bool {
    token
        .status
        .as_ref()
        .is_some_and(token_state::holds_a_value)
}

/// The token carries its key's controller ownerReference.
fn adopted_by(token: &ApiToken, key: &ApiKey) -> bool {
    key.metadata
        .uid
        .as_deref()
        .is_some_and(|uid| token.controlling_key_uid() == Some(uid))
}

/// One reconcile of one token past its key: what it read, for the steps
/// that decide and act.
struct Reconciling<'a> {
    ctx: &'a Context,
    token: &'a ApiToken,
    ns: String,
    uid: String,
    secret_name: String,
    secret_key: String,
    /// The status as the cache shows it.
    current: ApiTokenStatus,
}

impl Reconciling<'_> {
    fn secrets(&self) -> Api<HashedSecret> {
        self.ctx.api(&self.ns)
    }

    fn tokens(&self) -> Api<ApiToken> {
        self.ctx.api(&self.ns)
    }

    /// The decision, the Secret it was made on and the Secret's resourceVersion.
    async fn decide(
        &self,
        key_state: KeyState<'_>,
    ) -> Result<(Decision, SecretView, Option<String>), Error> {
        let (ctx, token) = (self.ctx, self.token);
        let (name, key, uid) = (&self.secret_name, &self.secret_key, &self.uid);
        let cached = ctx.secrets.get(&ObjectRef::new(name).within(&self.ns));
        let from_cache = cached.is_some();
        let (mut secret, mut secret_rv) = match cached {
            Some(s) => (token_state::view(&s, uid, key), s.resource_version()),
            // A token without any status yet (new, adopted, never decided on)
            // has no Secret of ours, and the synced cache shows none by that
            // name: no GET (a burst of new tokens saves one request each). If a
            // Secret exists after all (someone else's, or ours not seen yet),
            // the create fails, and the token, which now has a status, has its
            // Secret read by every later reconcile.
            None if token.status.is_none() && ctx.handles.synced.load(Ordering::SeqCst) => {
                (SecretView::Missing, None)
            }
            None => fetch_view(&self.secrets(), name, uid, key).await?,
        };
        let mut decision = token_state::decide_with_floor(
            token,
            key_state,
            &secret,
            ctx.clock.now(),
            ctx.config.min_rotation,
        );
        // A rotation depends on the clock, not on the Secret's content: the write's
        // resourceVersion precondition (below) is enough, and a rotation storm
        // saves one GET per token.
        let rotation = matches!(decision.action, ValueAction::Issue(IssueKind::Rotation(_)));
        if decision.action != ValueAction::Keep && from_cache && !rotation {
            // Act only on the Secret as it is now, not as the watch cache last saw it.
            let (fresh, fresh_rv) = fetch_view(&self.secrets(), name, uid, key).await?;
            secret_rv = fresh_rv;
            if fresh != secret {
                secret = fresh;
                decision = token_state::decide_with_floor(
                    token,
                    key_state,
                    &secret,
                    ctx.clock.now(),
                    ctx.config.min_rotation,
                );
            }
        }
        Ok((decision, secret, secret_rv))
    }

    /// Carries out the decision's action; the value's hash as recorded once
    /// this reconcile's writes are done.
    async fn carry_out(
        &self,
        decision: &Decision,
        secret: &SecretView,
        secret_rv: Option<&str>,
        kind: TokenKind,
    ) -> Result<Option<String>, Error> {
        // spec.secret.name changed: the Secret the status still names. It goes
        // once the value is in the new one (just before the promote) or no value
        // is kept at all, and always before the status stops naming it, so that a
        // failed delete is retried. While the new name is blocked (a Secret we do
        // not own) the value stays where the status says it is.
        let moved_from = self
            .current
            .secret_name
            .as_deref()
            .filter(|old| *old != self.secret_name);
        // A spec edit may have changed spec.secret's labels or annotations, which
        // a Secret keeping its value must follow; synced before the status records
        // the new generation, so that a failed sync is retried.
        let spec_edited = self.current.observed_generation != self.token.metadata.generation
            && token_state::secret_template_error(self.token).is_none();
        match &decision.action {
            ValueAction::Keep => {
                let ours = matches!(secret, SecretView::Ours { .. });
                self.keep(decision, spec_edited && ours, moved_from).await
            }
            ValueAction::Remove => self.remove(decision, moved_from).await,
            ValueAction::Promote(_) => self.promote(decision, spec_edited, moved_from).await,
            ValueAction::Issue(issue) => {
                let issue = Issue {
                    kind: *issue,
                    token_kind: kind,
                    secret_rv,
                    moved_from,
                };
                self.issue_value(decision, issue).await
            }
        }
    }

    /// Keeps the value: the Secret's metadata follows a spec edit, a Secret
    /// renamed away goes once no value is kept, and the status is refreshed.
    async fn keep(
        &self,
        decision: &Decision,
        sync_metadata: bool,
        moved_from: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let hash_now = decision.status.hash.clone();
        if sync_metadata && hash_now.is_some() {
            sync_secret_metadata(&self.secrets(), self.token, &self.secret_name).await?;
        }
        if let Some(old) = moved_from.filter(|_| hash_now.is_none()) {
            delete_secret(&self.secrets(), old, &self.uid).await?;
        }
        self.write_status_if_changed(&decision.status).await?;
        Ok(hash_now)
    }

    /// Removes the value: status first (once it records no value, the
    /// verifier rejects every old one), then the Secret.
    async fn remove(
        &self,
        decision: &Decision,
        moved_from: Option<&str>,
    ) -> Result<Option<String>, Error> {
        if let Some(old) = moved_from {
            delete_secret(&self.secrets(), old, &self.uid).await?;
        }
        self.write_status_if_changed(&decision.status).await?;
        delete_secret(&self.secrets(), &self.secret_name, &self.uid).await?;
        Ok(None)
    }

    /// Promotes the pending value, which already is in the Secret.
    async fn promote(
        &self,
        decision: &Decision,
        spec_edited: bool,
        moved_from: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let pending = self
            .current
            .pending
            .as_ref()
            .ok_or(Error::MissingField("status.pending"))?;
        let token_id = self
            .current
            .token_id
            .clone()
            .ok_or(Error::MissingField("status.tokenId"))?;
        let status = token_state::promoted(&decision.status, &pending.hash, &token_id);
        // The pending value's Secret may have been written before a spec edit.
        if spec_edited {
            sync_secret_metadata(&self.secrets(), self.token, &self.secret_name).await?;
        }
        if let Some(old) = moved_from {
            delete_secret(&self.secrets(), old, &self.uid).await?;
        }
        let rv = self.token.resource_version();
        self.write_status(&status, rv.as_deref()).await?;
        Ok(status.hash)
    }

    /// Two-phase issue: record the new value's hash as pending, write the value
    /// into the Secret, then promote it. Returns the promoted hash.
    async fn issue_value(
        &self,
        decision: &Decision,
        issue: Issue<'_>,
    ) -> Result<Option<String>, Error> {
        let (ctx, token) = (self.ctx, self.token);
        // The decision keeps the token's own id, or names the one to use
        // instead of a foreign id; a first value gets the id derived from the uid.
        let token_id = match decision.status.token_id.as_deref().map(TokenId::parse) {
            Some(Ok(id)) => id,
            _ if self.uid.is_empty() => TokenId::generate(),
            _ => TokenId::for_uid(&self.uid),
        };
        let value = tokens::generate(issue.token_kind, &token_id);
        let hash = value.hash();

        let pending = token_state::pending(
            &self.current,
            token,
            issue.kind,
            &hash,
            token_id.as_str(),
            ctx.clock.now(),
        );
        let rv = token.resource_version();
        let written = self.write_status(&pending, rv.as_deref()).await?;
        ctx.handles.faults.fire(FaultPoint::AfterPending)?;

        let name = &self.secret_name;
        let secret = desired_secret(token, name, &self.secret_key, value.expose_secret())?;
        drop(value);
        let secrets: Api<Secret> = ctx.api(&self.ns);
        write_secret(&secrets, secret, name, issue.secret_rv).await?;
        ctx.handles.faults.fire(FaultPoint::AfterSecret)?;
        if let Some(old) = issue.moved_from {
            delete_secret(&self.secrets(), old, &self.uid).await?;
        }

        let status = token_state::promoted(&decision.status, hash.as_str(), token_id.as_str());
        self.write_status(&status, written.as_deref()).await?;
        ctx.handles.metrics.issued(issue.kind.as_str());
        info!(token = %object_key(token), reason = issue.kind.as_str(), "value issued");
        Ok(status.hash)
    }

    /// Writes `status` with the precondition `rv`; the new resourceVersion.
    async fn write_status(
        &self,
        status: &ApiTokenStatus,
        rv: Option<&str>,
    ) -> Result<Option<String>, Error> {
        write_status(self.ctx, &self.tokens(), self.token, status, rv).await
    }

    async fn write_status_if_changed(&self, desired: &ApiTokenStatus) -> Result<(), Error> {
        let rv = self.token.resource_version();
        write_status_if_changed(
            self.ctx,
            &self.tokens(),
            self.token,
            &self.current,
            desired,
            rv.as_deref(),
        )
        .await
    }

    /// After the action: the decision's Event, the restart targets when a
    /// value is kept, and when to look again.
    async fn follow_up(&self, decision: &Decision, hash_now: Option<String>) -> Action {
        let (ctx, token) = (self.ctx, self.token);
        if let Some(note) = &decision.note {
            publish(ctx, token, note).await;
        }
        if let Some(hash) = hash_now.as_deref() {
            let value_changed = hash_now != self.current.hash;
            roll_restart_targets(ctx, token, &self.ns, hash, value_changed).await;
        }
        match decision.requeue {
            Requeue::At(due) => ctx.requeue_at(Some(due)),
            Requeue::OnChange => ctx.requeue_at(None),
            Requeue::Later => Action::requeue(BLOCKED_RECHECK),
        }
    }
}

/// What a two-phase issue writes beyond the decision.
struct Issue<'a> {
    kind: IssueKind,
    token_kind: TokenKind,
    /// The Secret's version the decision saw (none: it was missing).
    secret_rv: Option<&'a str>,
    /// The Secret `spec.secret.name` moved the value away from.
    moved_from: Option<&'a str>,
}
