#!/usr/bin/env bash
# Rampart's whole test suite, with its real dependencies: the one command the README gives and
# .ci/run calls. It first fails on unformatted code (gofmt -l) and on staticcheck findings
# (honnef.co/go/tools, pinned in scripts/staticcheck.sh, installed once into a cache outside the
# clone) in the main module and the bench module. It builds the kube-apiserver and etcd that
# internal/kubetest starts (once per version, cached outside the clone by scripts/kube-assets.sh:
# about 15 minutes cold, instant after), installs Azurite for the Azure blob store tests
# (scripts/azurite.sh, cached the same way), installs the headless Chromium (Debian chromium)
# and the pinned axe-core that the web console's browser tests use (scripts/browser.sh; axe-core
# cached the same way; exports RAMPART_CHROMIUM and RAMPART_AXE_JS), installs the Debian
# packages the egress gateway's real-client tests drive (git, curl, python3-requests,
# python3-pip), starts a throwaway PostgreSQL (installing the server if needed), then runs go
# vet, the race-enabled tests of every package, and a short fuzzing pass over every parser of
# untrusted input, and checks that the benchmark module (bench/, with OPA) still builds and that
# its two engines still agree.
#
# Environment:
#   RAMPART_REQUIRE_INTEGRATION=1  tests that need a real server fail instead of skipping
#   RAMPART_KUBE_ASSETS=DIR        where the Kubernetes binaries are built and found (default:
#                                  the cache folder that scripts/kube-assets.sh prints)
#   FUZZTIME=50000x                executions per fuzz target (0 to skip fuzzing). A count, not a
#                                  duration: with a duration, Go 1.26's fuzz coordinator can fail a
#                                  target with a spurious "context deadline exceeded" when its
#                                  deadline races a busy worker (go.dev/issue/75804, fixed in 1.27).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/postgres.sh
source scripts/azurite.sh
source scripts/browser.sh

echo "== gofmt -l (every Go file of the repository, the bench module included)"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "These files are not gofmt-formatted; run gofmt -w on them:" >&2
  echo "$unformatted" >&2
  exit 1
fi

echo "== staticcheck (honnef.co/go/tools, pinned; installed once, cached)"
STATICCHECK=$(scripts/staticcheck.sh)
"$STATICCHECK" ./...
(cd bench && "$STATICCHECK" ./...)

echo "== Kubernetes control plane binaries (a cold build takes about 15 minutes, then they are cached)"
KUBEBUILDER_ASSETS=$(scripts/kube-assets.sh)
export KUBEBUILDER_ASSETS

echo "== Azurite (the Azure Storage emulator the blob store tests start; installed once, cached)"
azurite_install

echo "== Chromium and axe-core (the web console's browser tests; axe-core installed once, cached)"
browser_install

echo "== Debian packages the egress gateway's real-client tests drive (git, curl, python3-requests, python3-pip)"
egress_clients=()
for pkg in git curl python3 python3-requests python3-pip; do
  dpkg -s "$pkg" >/dev/null 2>&1 || egress_clients+=("$pkg")
done
if [ ${#egress_clients[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${egress_clients[@]}"
fi

trap pg_stop EXIT
pg_start

echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 20m ./...

echo "== the image's static binary (what deploy/Dockerfile builds): no loader, no libc, starts"
static=$(mktemp -d)
CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$static/rampart" ./cmd/rampart
RAMPART_STATIC_BINARY="$static/rampart" go test -count=1 -run '^TestStaticBuild$' ./deploy
rm -rf "$static"

echo "== bench module: vet, and the agreement tests that keep the benchmark honest"
(cd bench && go vet ./... && go test -count=1 -run 'TestAgreement|TestLapsedGrantsDeny' .)

fuzztime=${FUZZTIME:-50000x}
if [ "$fuzztime" != "0" ]; then
  echo "== fuzz ($fuzztime per target)"
  while read -r pkg target; do
    [ -n "$pkg" ] || continue
    echo "-- $pkg $target"
    go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg" >/tmp/rampart-fuzz.log 2>&1 || {
      cat /tmp/rampart-fuzz.log; exit 1; }
  done < <(grep -rl --include='*_test.go' --exclude-dir=bench '^func Fuzz' . | while read -r f; do
    for t in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
      echo "./$(dirname "${f#./}") $t"
    done
  done | sort -u)
fi
echo "== all tests passed"
