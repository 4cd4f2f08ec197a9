//! What the binary writes where nobody reads it: a pipe closed early, as
//! `apikey-operator completions bash | head` leaves it, ends the command
//! quietly instead of a panic.

use std::process::{Command, Stdio};

use crate::support::process::operator_binary;

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    for args in [&["completions", "bash"][..], &["crds"], &["--help"]] {
        // The reader is gone before the first write: every write fails with EPIPE.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(operator_binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("apikey-operator runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked"),
            "{args:?} panicked on a closed pipe: {stderr}"
        );
        assert!(out.status.success(), "{args:?}: {}: {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}
