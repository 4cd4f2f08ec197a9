//! The verifier: answers "whose token is this?" for the Kubernetes webhook
//! token authenticator (TokenReview) and for gateways (forward-auth).
//!
//! `index` is the pure lookup and verdict, `watch` keeps it current from
//! ApiTokens and ApiKeys, `http` serves the endpoints, `last_used` reports
//! use back to ApiToken status.

pub mod index;
