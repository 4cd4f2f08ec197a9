//! The operator binary's subcommands as a user runs them.

mod commands;
mod local_mode;
mod local_mode_state;
mod output;
mod requests;
