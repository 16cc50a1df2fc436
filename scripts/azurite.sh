#!/usr/bin/env bash
# Azurite, the Azure Storage emulator that the blob store tests run against.
#
#   scripts/azurite.sh install          # or: source scripts/azurite.sh && azurite_install
#
# Installs npm's azurite@3.35.0 (pinned) into ${XDG_CACHE_HOME:-$HOME/.cache}/rampart/azurite-3.35.0,
# outside the clone, once: a finished install is kept and reused, a half-finished one is never
# mistaken for it (npm runs in a fresh directory that is renamed into place at the end). The tests
# (internal/testenv.Azurite) start and stop the server themselves; they find it there, or in
# RAMPART_AZURITE_DIR, which azurite_install exports. Needs Node.js and npm: installs the Debian
# nodejs and npm packages if they are missing.

AZURITE_VERSION=3.35.0

azurite_install() {
  local dir=${RAMPART_AZURITE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rampart/azurite-$AZURITE_VERSION}
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "azurite.sh: no Node.js/npm found; installing the Debian nodejs and npm packages" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2
  fi
  if [ -x "$dir/node_modules/.bin/azurite-blob" ] &&
    grep -q "\"version\": \"$AZURITE_VERSION\"" "$dir/node_modules/azurite/package.json" 2>/dev/null; then
    export RAMPART_AZURITE_DIR=$dir
    return 0
  fi
  echo "azurite.sh: installing azurite@$AZURITE_VERSION into $dir" >&2
  mkdir -p "$(dirname "$dir")"
  local tmp
  tmp=$(mktemp -d "$(dirname "$dir")/.azurite-install.XXXXXX")
  if ! (cd "$tmp" && echo '{"private":true}' >package.json &&
    npm install --no-audit --no-fund --loglevel=error --save-exact "azurite@$AZURITE_VERSION" >&2); then
    rm -rf "$tmp"
    echo "azurite.sh: npm install azurite@$AZURITE_VERSION failed" >&2
    return 1
  fi
  rm -rf "$dir"
  mv "$tmp" "$dir"
  "$dir/node_modules/.bin/azurite-blob" --version >/dev/null || {
    echo "azurite.sh: the installed azurite-blob does not run (node $(node --version))" >&2; return 1; }
  export RAMPART_AZURITE_DIR=$dir
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    install) azurite_install && echo "azurite.sh: azurite@$AZURITE_VERSION in $RAMPART_AZURITE_DIR" ;;
    *) echo "usage: $0 install" >&2; exit 2 ;;
  esac
fi
