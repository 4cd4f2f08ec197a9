//! One AdmissionReview answered: the request decoded, the rules of
//! `decision` applied with the key looked up and the requester's
//! permissions asked of the API server (SubjectAccessReview, as an
//! aggregated API server or kube-rbac-proxy asks), and the answer built.
//! Anything that cannot be checked is refused (`failurePolicy: Fail` on the
//! server side, fail closed here).

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::response::Status;
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::decision::{self, Denial, Plan, Requester, Standing, Subject, What};
use crate::api::{ApiKey, GROUP, Owner};

/// Answers AdmissionReviews with the operator's client.
#[derive(Clone)]
pub struct Reviewer {
    client: Client,
}

impl Reviewer {
    pub fn new(client: Client) -> Reviewer {
        Reviewer { client }
    }

    /// The answer to `review`: allowed, or denied with a message that says
    /// what to do. Never fails: an unreadable request is answered as such.
    pub async fn answer(
        &self,
        review: AdmissionReview<DynamicObject>,
    ) -> AdmissionReview<DynamicObject> {
        let request: AdmissionRequest<DynamicObject> = match review.try_into() {
            Ok(request) => request,
            Err(_) => {
                return AdmissionResponse::invalid(
                    "the AdmissionReview has no request; send admission.k8s.io/v1 AdmissionReview",
                )
                .into_review();
            }
        };
        let allowed = AdmissionResponse::from(&request);
        let response = match self.decide(&request).await {
            Ok(()) => allowed,
            Err(denial) => {
                let user = &request.user_info;
                info!(
                    user = user.username.as_deref().unwrap_or_default(),
                    kind = %request.kind.kind,
                    namespace = request.namespace.as_deref().unwrap_or_default(),
                    name = %request.name,
                    reason = %denial,
                    "admission denied"
                );
                deny(allowed, &denial)
            }
        };
        response.into_review()
    }

    async fn decide(&self, request: &AdmissionRequest<DynamicObject>) -> Result<(), Denial> {
        if request.kind.group != GROUP || request.sub_resource.is_some() {
            // Only the main resources decide whose values are minted; status writes are
            // RBAC's business (docs/security.md).
            return Ok(());
        }
        let namespace = request
            .namespace
            .clone()
            .or_else(|| request.object.as_ref().and_then(|o| o.namespace()))
            .ok_or_else(|| Denial::Malformed("the request names no namespace".to_owned()))?;
        let subject = subject(request)?;
        let user = &request.user_info;
        match decision::plan(&request.operation, &namespace, &subject) {
            Plan::Allow => Ok(()),
            Plan::ActAs { namespace, owner } => {
                self.act_as(user, &namespace, &owner, What::Key).await
            }
            Plan::KeyOwner { namespace, key } => {
                let keys: Api<ApiKey> = Api::namespaced(self.client.clone(), &namespace);
                let found = keys.get_opt(&key).await.map_err(|e| {
                    Denial::Unchecked(format!("looking up ApiKey {namespace}/{key} failed: {e}"))
                })?;
                let Some(found) = found else {
                    return Err(Denial::KeyNotFound { namespace, key });
                };
                self.act_as(user, &namespace, &found.spec.owner, What::TokenOn(key))
                    .await
            }
        }
    }

    /// Whether `user` may act as `owner`: the rules' second and last steps,
    /// with the access reviews asked one by one until one allows.
    async fn act_as(
        &self,
        user: &UserInfo,
        namespace: &str,
        owner: &Owner,
        what: What,
    ) -> Result<(), Denial> {
        let requester = Requester {
            username: user.username.as_deref().unwrap_or_default(),
        };
        let standing = decision::standing(requester, namespace, owner).map_err(|reason| {
            Denial::Forbidden {
                what: what.clone(),
                reason,
            }
        })?;
        let mut answers = Vec::new();
        if let Standing::AnyOf(questions) = &standing {
            for question in questions {
                let allowed = self.allowed(user, question).await?;
                answers.push(allowed);
                if allowed {
                    break;
                }
            }
        }
        decision::verdict(requester, what, namespace, owner, &standing, &answers)
    }

    /// Asks the API server's authorizer whether `user` may do `question`.
    async fn allowed(
        &self,
        user: &UserInfo,
        question: &ResourceAttributes,
    ) -> Result<bool, Denial> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                uid: user.uid.clone(),
                groups: user.groups.clone(),
                extra: user.extra.clone(),
                resource_attributes: Some(question.clone()),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let reviews: Api<SubjectAccessReview> = Api::all(self.client.clone());
        match reviews.create(&PostParams::default(), &review).await {
            Ok(answer) => Ok(answer.status.is_some_and(|s| s.allowed)),
            Err(e) => {
                warn!(error = %e, "a SubjectAccessReview failed; the admission request is refused");
                Err(Denial::Unchecked(format!(
                    "asking the API server whether the requester may {} {} failed: {e}",
                    question.verb.as_deref().unwrap_or_default(),
                    question.resource.as_deref().unwrap_or_default(),
                )))
            }
        }
    }
}

/// The request's old and new object as an ApiKey or ApiToken.
fn subject(request: &AdmissionRequest<DynamicObject>) -> Result<Subject, Denial> {
    fn decode<T: DeserializeOwned>(object: &DynamicObject) -> Result<Box<T>, Denial> {
        let value = serde_json::to_value(object).map_err(|e| Denial::Malformed(e.to_string()))?;
        serde_path_to_error::deserialize(value)
            .map(Box::new)
            .map_err(|e| Denial::Malformed(format!("at {}: {}", e.path(), e.inner())))
    }
    let object = match (&request.operation, &request.object, &request.old_object) {
        (_, Some(object), _) => object,
        // A delete has only the old object; nothing to check (plan allows it).
        (Operation::Delete, None, Some(old)) => old,
        _ => {
            return Err(Denial::Malformed(
                "the request carries no object".to_owned(),
            ));
        }
    };
    let old = request.old_object.as_ref();
    match request.kind.kind.as_str() {
        "ApiKey" => Ok(Subject::Key {
            new: decode(object)?,
            old: old.map(decode).transpose()?,
        }),
        "ApiToken" => Ok(Subject::Token {
            new: decode(object)?,
            old: old.map(decode).transpose()?,
        }),
        other => Err(Denial::Malformed(format!(
            "kind {other:?} is not one this webhook reviews (ApiKey, ApiToken); check the \
             ValidatingWebhookConfiguration's rules"
        ))),
    }
}

/// `response` refused for `denial`, with the HTTP code the client sees.
fn deny(response: AdmissionResponse, denial: &Denial) -> AdmissionResponse {
    let (code, reason) = match denial {
        Denial::Malformed(_) => (400, "BadRequest"),
        Denial::Unchecked(_) => (500, "InternalError"),
        Denial::NotAllowed { .. } | Denial::Forbidden { .. } | Denial::KeyNotFound { .. } => {
            (403, "Forbidden")
        }
    };
    let mut response = response.deny(denial);
    response.result = Status::failure(&denial.to_string(), reason).with_code(code);
    response
}
