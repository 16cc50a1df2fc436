#!/usr/bin/env bash
# The headless browser and the accessibility checker that the web console's browser tests use
# (internal/browsertest).
#
#   scripts/browser.sh install          # or: source scripts/browser.sh && browser_install
#
# browser_install, idempotent:
#  - installs the Debian chromium package, and fonts-liberation so that screenshots have text,
#    when they are missing (apt-get waits for another apt that holds the lock rather than fail),
#    and exports RAMPART_CHROMIUM (the chromium command);
#  - installs npm's axe-core@4.14.1 (pinned) into
#    ${XDG_CACHE_HOME:-$HOME/.cache}/rampart/axe-core-4.14.1, outside the clone, once: a finished
#    install is kept and reused, a half-finished one is never mistaken for it (npm runs in a fresh
#    directory that is renamed into place at the end), and exports RAMPART_AXE_JS (its
#    axe.min.js, which the tests inject into the page under test). Needs Node.js and npm:
#    installs the Debian nodejs and npm packages if they are missing.
# Without the exports, the tests look in the same places (chromium on PATH, the cache folder).

AXE_VERSION=4.14.1

browser_apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq "$@" >&2
}

browser_install() {
  local missing=() pkg
  for pkg in chromium fonts-liberation; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "browser.sh: installing the Debian packages ${missing[*]}" >&2
    browser_apt_install "${missing[@]}" || { echo "browser.sh: apt-get install ${missing[*]} failed" >&2; return 1; }
  fi
  local chromium
  chromium=$(command -v chromium) || { echo "browser.sh: no chromium command after installing the chromium package" >&2; return 1; }
  export RAMPART_CHROMIUM=$chromium

  local dir=${XDG_CACHE_HOME:-$HOME/.cache}/rampart/axe-core-$AXE_VERSION
  local js=$dir/node_modules/axe-core/axe.min.js
  if [ -s "$js" ] &&
    grep -q "\"version\": \"$AXE_VERSION\"" "$dir/node_modules/axe-core/package.json" 2>/dev/null; then
    export RAMPART_AXE_JS=$js
    return 0
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "browser.sh: no Node.js/npm found; installing the Debian nodejs and npm packages" >&2
    browser_apt_install nodejs npm || { echo "browser.sh: apt-get install nodejs npm failed" >&2; return 1; }
  fi
  echo "browser.sh: installing axe-core@$AXE_VERSION into $dir" >&2
  mkdir -p "$(dirname "$dir")"
  local tmp
  tmp=$(mktemp -d "$(dirname "$dir")/.axe-core-install.XXXXXX")
  if ! (cd "$tmp" && echo '{"private":true}' >package.json &&
    npm install --no-audit --no-fund --loglevel=error --save-exact "axe-core@$AXE_VERSION" >&2); then
    rm -rf "$tmp"
    echo "browser.sh: npm install axe-core@$AXE_VERSION failed" >&2
    return 1
  fi
  if [ ! -s "$tmp/node_modules/axe-core/axe.min.js" ]; then
    rm -rf "$tmp"
    echo "browser.sh: npm installed axe-core@$AXE_VERSION without node_modules/axe-core/axe.min.js" >&2
    return 1
  fi
  rm -rf "$dir"
  mv "$tmp" "$dir"
  export RAMPART_AXE_JS=$js
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    install) browser_install &&
      echo "browser.sh: $("$RAMPART_CHROMIUM" --version 2>/dev/null) ($RAMPART_CHROMIUM); axe-core@$AXE_VERSION ($RAMPART_AXE_JS)" ;;
    *) echo "usage: $0 install" >&2; exit 2 ;;
  esac
fi
