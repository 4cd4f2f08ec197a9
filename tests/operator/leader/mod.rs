//! Two replicas of the operator binary with leader election.

mod election;
mod failover;
