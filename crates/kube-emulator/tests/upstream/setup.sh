#!/usr/bin/env bash
# Builds and caches the upstream apiextensions-apiserver (Debian sid's packaged
# Kubernetes code) plus etcd, for the fidelity tests (the emulator's
# tests/emulator/fidelity/ and the apikey-operator's tests/operator/fidelity/).
# Cache: $APIKEY_UPSTREAM_CACHE (default $HOME/.cache/apikey-operator-upstream),
# outside the clone so CI on the same machine reuses it. Idempotent.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${APIKEY_UPSTREAM_CACHE:-$HOME/.cache/apikey-operator-upstream}"
chroot_dir="$cache/chroot"
bin_dir="$cache/bin"
wrapper_dir="$here/wrapper"
packages=(golang-k8s-apiextensions-apiserver-dev golang-go ca-certificates)
# etcd-server's maintainer scripts need /proc (systemd-sysusers), which a plain
# chroot lacks; only its binary is needed, so the package is unpacked, not installed.
etcd_package=etcd-server

log() { echo "upstream setup: $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# The mirror the host's apt already uses (the only network we may reach).
host_mirror() {
    local uri
    uri="$(grep -rhoE '^(URIs:|deb)[[:space:]]+[^[:space:]]*' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)"
    echo "${uri:-http://deb.debian.org/debian}"
}

ensure_chroot() {
    if [ -f "$chroot_dir/.apikey-packages-ok" ]; then
        return
    fi
    if ! command -v debootstrap >/dev/null; then
        log "installing debootstrap on the host"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
    fi
    local mirror
    mirror="$(host_mirror)"
    if [ ! -x "$chroot_dir/usr/bin/apt-get" ] || [ ! -f "$chroot_dir/.apikey-debootstrap-ok" ]; then
        log "debootstrap sid from $mirror into $chroot_dir"
        as_root rm -rf "$chroot_dir"
        mkdir -p "$cache"
        as_root debootstrap --variant=minbase sid "$chroot_dir" "$mirror"
        as_root touch "$chroot_dir/.apikey-debootstrap-ok"
    fi
    log "installing ${packages[*]} in the chroot"
    # sid's Release file looks expired to this machine's clock.
    echo 'Acquire::Check-Valid-Until "false";' | as_root tee "$chroot_dir/etc/apt/apt.conf.d/99no-check-valid-until" >/dev/null
    as_root chroot "$chroot_dir" apt-get update -qq
    as_root chroot "$chroot_dir" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${packages[@]}"
    as_root chroot "$chroot_dir" sh -c "cd /tmp && rm -f ${etcd_package}_*.deb && apt-get download -qq $etcd_package && rm -rf /opt/etcd && dpkg-deb -x ${etcd_package}_*.deb /opt/etcd"
    as_root touch "$chroot_dir/.apikey-packages-ok"
}

build_wrapper() {
    local out="$bin_dir/apiextensions-wrapper"
    # Keyed by content, not mtime: a fresh clone of unchanged sources reuses the cached build.
    local stamp
    stamp="$(cat "$wrapper_dir"/*.go "$here/setup.sh" | sha256sum | cut -d' ' -f1)"
    if [ -x "$out" ] && [ -x "$bin_dir/etcd" ] && [ "$(cat "$bin_dir/.stamp" 2>/dev/null)" = "$stamp" ]; then
        log "cached: $out"
        return
    fi
    local gopath_src="$chroot_dir/usr/share/gocode/src"
    local pkg_dir="$chroot_dir/tmp/apikey-wrapper/src/apikey-operator.dev/upstream-wrapper"
    as_root rm -rf "$chroot_dir/tmp/apikey-wrapper"
    as_root mkdir -p "$pkg_dir"
    as_root cp "$wrapper_dir"/*.go "$pkg_dir/"
    [ -d "$gopath_src/k8s.io/apiextensions-apiserver" ] || { log "missing apiextensions sources"; exit 1; }
    # /version reports the Kubernetes release of the packaged code (0.36.4 -> v1.36.4), as a
    # release build would; kubectl refuses the source tree's placeholder.
    local pkg_version minor patch ldflags
    pkg_version="$(as_root chroot "$chroot_dir" dpkg-query -W -f '${Version}' golang-k8s-apiextensions-apiserver-dev)"
    pkg_version="${pkg_version%%-*}"
    minor="$(echo "$pkg_version" | cut -d. -f2)"
    patch="$(echo "$pkg_version" | cut -d. -f3)"
    ldflags="-s -w"
    for kv in "gitVersion=v1.$minor.$patch" "gitMajor=1" "gitMinor=$minor" "gitTreeState=clean"; do
        ldflags="$ldflags -X k8s.io/component-base/version.$kv"
    done
    log "building the wrapper against apiextensions-apiserver $pkg_version (nice -n 10; the slow part on a cold cache)"
    # No /proc in the chroot: GOROOT is given, telemetry is off. CGO off gives a static
    # binary that runs on the host whatever its libc.
    as_root chroot "$chroot_dir" env GO111MODULE=off GOFLAGS= GOROOT=/usr/lib/go GOTELEMETRY=off CGO_ENABLED=0 \
        GOPATH=/tmp/apikey-wrapper:/usr/share/gocode GOCACHE=/root/.cache/go-build \
        HOME=/root nice -n 10 go build -ldflags "$ldflags" -o /tmp/apikey-wrapper/apiextensions-wrapper \
        apikey-operator.dev/upstream-wrapper
    mkdir -p "$bin_dir"
    as_root cp "$chroot_dir/tmp/apikey-wrapper/apiextensions-wrapper" "$out.tmp"
    as_root cp "$chroot_dir/opt/etcd/usr/bin/etcd" "$bin_dir/etcd"
    as_root chown "$(id -u):$(id -g)" "$out.tmp" "$bin_dir/etcd"
    mv "$out.tmp" "$out"
    echo "$stamp" >"$bin_dir/.stamp"
    log "built $out"
}

ensure_chroot
if [ "${1:-}" = "--chroot-only" ]; then exit 0; fi
build_wrapper
