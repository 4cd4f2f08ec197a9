//! Who a token may authenticate as, and for whom: the attacks of the threat model
//! (docs/security.md), each refused.

mod audiences;
mod token_ids;
