#!/usr/bin/env bash
# Runs a real NGINX with auth_request in front of a tiny upstream, asking the
# verifier's /auth (tests/operator/verifier/nginx.rs; configuration as in
# docs/verifier.md). Installs NGINX from Debian when it is missing.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/apikey-operator-target}"

if ! command -v nginx >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx
fi
nginx -V 2>&1 | grep -q -- --with-http_auth_request_module \
    || { echo "this nginx lacks the auth_request module" >&2; exit 1; }

cargo test --locked --test operator verifier::nginx:: -- --ignored --nocapture
