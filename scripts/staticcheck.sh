#!/usr/bin/env bash
# staticcheck (honnef.co/go/tools), pinned, installed once into a cache outside the clone and
# printed:
#
#   STATICCHECK=$(scripts/staticcheck.sh)    # then: "$STATICCHECK" ./...
#
# Progress goes to stderr, the binary's path alone to stdout. The binary is built with
# `go install` from the pinned module version (a source build with the Go toolchain in use, so
# it understands this Go version) into a fresh directory that is renamed into place when it is
# complete; a finished install is reused (about 10 ms), a half-finished one never mistaken for
# it.
#
# Environment:
#   RAMPART_STATICCHECK_DIR  where to install (default
#                            ${XDG_CACHE_HOME:-$HOME/.cache}/rampart/staticcheck-<version>-<go version>)
set -euo pipefail

STATICCHECK_VERSION=v0.8.2

gov=$(go env GOVERSION)
dir=${RAMPART_STATICCHECK_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rampart/staticcheck-$STATICCHECK_VERSION-$gov}
if [ -x "$dir/staticcheck" ] && "$dir/staticcheck" -version 2>/dev/null | grep -q "${STATICCHECK_VERSION#v}"; then
  echo "$dir/staticcheck"
  exit 0
fi
echo "staticcheck.sh: installing honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION into $dir" >&2
mkdir -p "$(dirname "$dir")"
tmp=$(mktemp -d "$(dirname "$dir")/.staticcheck-install.XXXXXX")
# Outside the clone, so that the install neither reads nor changes Rampart's go.mod.
if ! (cd "$tmp" && GOBIN="$tmp" GOFLAGS=-mod=mod go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" >&2); then
  rm -rf "$tmp"
  echo "staticcheck.sh: go install honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION failed" >&2
  exit 1
fi
rm -rf "$dir"
mv "$tmp" "$dir"
"$dir/staticcheck" -version >/dev/null || { echo "staticcheck.sh: the installed staticcheck does not run" >&2; exit 1; }
echo "$dir/staticcheck"
