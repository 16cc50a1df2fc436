#!/usr/bin/env bash
# Builds the Kubernetes control plane that Rampart's tests run against (a real kube-apiserver and
# etcd on loopback, see internal/kubetest), once per version, in a cache outside the clone, and
# prints the folder that holds them:
#
#   export KUBEBUILDER_ASSETS=$(scripts/kube-assets.sh)
#
# Progress goes to stderr, the folder alone to stdout. When the binaries for these versions are
# already there it does nothing (about 10 ms). A cold build takes about 15 minutes on 2 cores and
# 2.5 GB of memory (kube-apiserver is most of it); with a warm Go build cache, under a minute.
#
#   kube-apiserver  the upstream main package k8s.io/kubernetes/cmd/kube-apiserver, built from a
#                   throwaway module that requires k8s.io/kubernetes and replaces each staging
#                   module its go.mod points at ./staging/... with the published v0.x.y release
#   etcd            the upstream main package of go.etcd.io/etcd/server/v3 (etcdmain.Main)
#   kubectl         only with RAMPART_KUBE_KUBECTL=1: envtest never runs it (it only writes a
#                   kubeconfig for it), so the tests do not need it; it is there for people
#
# Environment:
#   RAMPART_KUBE_ASSETS   the folder to build into and print (default
#                         ${XDG_CACHE_HOME:-$HOME/.cache}/rampart/kube/<k8s>-etcd<etcd>/bin)
#   RAMPART_KUBE_KUBECTL  1 to also build kubectl
#   RAMPART_KUBE_BUILD_P  go build -p (default 1, and the build runs under nice, so the machine
#                         stays usable while it builds)
#
# Binaries are statically linked (CGO_ENABLED=0, as Kubernetes releases them), built with
# -trimpath, stamped with their versions, and moved into place only once complete; a lock keeps
# two concurrent runs from building twice.
set -euo pipefail

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
STAGING_VERSION=v0${K8S_VERSION#v1} # k8s.io/api etc. are published as v0.<minor>.<patch>

say() { echo "kube-assets.sh: $*" >&2; }
die() { say "FAILED: $*"; exit 1; }

key="${K8S_VERSION}-etcd${ETCD_VERSION}"
bin=${RAMPART_KUBE_ASSETS:-${XDG_CACHE_HOME:-$HOME/.cache}/rampart/kube/$key/bin}
want_kubectl=${RAMPART_KUBE_KUBECTL:-0}
stamp="$bin/VERSIONS"
stamp_text="kube-apiserver $K8S_VERSION
etcd $ETCD_VERSION"

ready() {
  [ -x "$bin/kube-apiserver" ] && [ -x "$bin/etcd" ] && [ -f "$stamp" ] &&
    [ "$(head -n 2 "$stamp")" = "$stamp_text" ] &&
    { [ "$want_kubectl" != 1 ] || [ -x "$bin/kubectl" ]; }
}

if ready; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "go is not on PATH; install Go 1.26 (https://go.dev/dl/) and run again"
mkdir -p "$bin" || die "cannot create $bin (set RAMPART_KUBE_ASSETS to a writable folder)"

# One build at a time per folder; a second caller waits, then finds the binaries ready.
exec 9>"$bin/.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9 || die "cannot lock $bin/.lock"
fi
if ready; then
  echo "$bin"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/rampart-kube-assets.XXXXXX")
trap 'if [ $? -eq 0 ]; then rm -rf "$work"; else say "the build modules and logs are kept in $work"; fi' EXIT

export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
p=${RAMPART_KUBE_BUILD_P:-1}
build() { # build OUT PKG [LDFLAGS]
  local out=$1 pkg=$2 ldflags=${3:-}
  local t0=$SECONDS
  say "building $out from $pkg (go build -p $p; the log is $work/$out.log)"
  if ! nice -n 10 go build -p "$p" -trimpath -ldflags "-s -w $ldflags" -o "$work/$out.new" "$pkg" >"$work/$out.log" 2>&1; then
    cat "$work/$out.log" >&2
    die "go build $pkg failed (log above)"
  fi
  mv -f "$work/$out.new" "$bin/$out"
  say "built $bin/$out in $((SECONDS - t0)) s"
}

t_start=$SECONDS

# etcd: a module requiring the server, with its upstream main package as a tool.
if [ ! -x "$bin/etcd" ] || [ "$(sed -n 2p "$stamp" 2>/dev/null)" != "etcd $ETCD_VERSION" ]; then
  mkdir -p "$work/etcd"
  (
    cd "$work/etcd"
    go mod init rampart.dev/kube-assets/etcd 2>/dev/null
    say "resolving go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >"$work/etcd-get.log" 2>&1 || {
      cat "$work/etcd-get.log" >&2; die "go get go.etcd.io/etcd/server/v3@$ETCD_VERSION failed (is the Go module proxy reachable?)"; }
    build etcd go.etcd.io/etcd/server/v3
  )
fi

# kube-apiserver (and kubectl): k8s.io/kubernetes is not meant to be required as a module; its
# go.mod requires the staging modules at v0.0.0 and replaces them with ./staging/..., which only
# works inside its own repository. Replacing each with its published release makes it buildable.
if [ ! -x "$bin/kube-apiserver" ] || [ "$(sed -n 1p "$stamp" 2>/dev/null)" != "kube-apiserver $K8S_VERSION" ] ||
  { [ "$want_kubectl" = 1 ] && [ ! -x "$bin/kubectl" ]; }; then
  mkdir -p "$work/kube"
  (
    cd "$work/kube"
    say "resolving k8s.io/kubernetes@$K8S_VERSION"
    kmod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" 2>"$work/kube-download.log" |
      sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p') || true
    [ -n "$kmod" ] && [ -f "$kmod" ] || {
      cat "$work/kube-download.log" >&2; die "cannot download k8s.io/kubernetes@$K8S_VERSION (is the Go module proxy reachable?)"; }
    # The staging modules: replaced with ./staging/... and also required (two sample modules
    # are replaced but never required, nor published).
    staging=$(awk '
      /^replace[[:space:]]*\(/ { r = 1; next }  r && /^\)/ { r = 0 }
      r && $2 == "=>" && $3 ~ /^\.\/staging\// { s[$1] = 1 }
      /^require[[:space:]]*\(/ { q = 1; next }  q && /^\)/ { q = 0 }
      q && NF >= 2 { need[$1] = 1 }
      END { for (m in s) if (m in need) print m }' "$kmod" | sort)
    [ -n "$staging" ] || die "found no ./staging replacements in $kmod; has k8s.io/kubernetes changed its layout?"
    say "replacing $(echo "$staging" | wc -l) staging modules with their $STAGING_VERSION releases"
    {
      echo "module rampart.dev/kube-assets/kube"
      echo
      echo "go $(sed -n 's/^go //p' "$kmod")"
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      echo "replace ("
      for m in $staging; do echo "	$m => $m $STAGING_VERSION"; done
      echo ")"
    } >go.mod
    tools=(k8s.io/kubernetes/cmd/kube-apiserver)
    [ "$want_kubectl" = 1 ] && tools+=(k8s.io/kubernetes/cmd/kubectl)
    for t in "${tools[@]}"; do
      go get -tool "$t@$K8S_VERSION" >>"$work/kube-get.log" 2>&1 || {
        cat "$work/kube-get.log" >&2; die "go get -tool $t@$K8S_VERSION failed (log above)"; }
    done
    minor=${K8S_VERSION#v1.}
    minor=${minor%%.*}
    ver=""
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ver+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    done
    if [ ! -x "$bin/kube-apiserver" ] || [ "$(sed -n 1p "$stamp" 2>/dev/null)" != "kube-apiserver $K8S_VERSION" ]; then
      build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ver"
    fi
    if [ "$want_kubectl" = 1 ]; then
      build kubectl k8s.io/kubernetes/cmd/kubectl "$ver"
    fi
  )
fi

"$bin/kube-apiserver" --version >&2 || die "the kube-apiserver just built does not run"
"$bin/etcd" --version >&2 || die "the etcd just built does not run"
printf '%s\n' "$stamp_text" >"$stamp"
say "ready in $((SECONDS - t_start)) s: $bin"
echo "$bin"
