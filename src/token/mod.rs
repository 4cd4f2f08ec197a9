//! Token values.
