#!/usr/bin/env bash
# Runs Rampart's benchmarks against OPA, smokescreen and age and prints the ratios (see
# README.md), and the identity benchmarks (credential verification, sign-in risk) against their
# targets.
#
#   bench/run.sh                    # everything: agreement tests, in-process, egress, HTTP, approval-to-allow, identity, weights vault
#   bench/run.sh -bench Vault       # only the benchmarks matching the regular expression (go test -bench),
#                                   # after only the agreement tests they need (here TestVaultPeersAgree)
#   bench/run.sh -bench Admission   # the admission webhook beside OPA, and through
#                                   # kube-apiserver when its binaries are built (scripts/kube-assets.sh)
#
# Environment: RAMPART_BENCH_HTTP_SECONDS (default 5) is the measured time per server and
# concurrency in the HTTP comparison, RAMPART_BENCH_EGRESS_SECONDS (default 5) the same for the
# egress comparison, RAMPART_BENCH_EGRESS_BULK_MIB (default 256) the size of one bulk transfer.
# The weights vault: RAMPART_BENCH_VAULT_MIB (default 1024) the plaintext of the in-memory and
# file comparisons, RAMPART_BENCH_VAULT_STREAM_GIB (default 10) the stream whose peak memory is
# measured, RAMPART_BENCH_VAULT_AZURE_MIB (default 256) the blob-store objects,
# RAMPART_BENCH_VAULT_ROUNDS (default 3). The admission webhook through kube-apiserver:
# RAMPART_BENCH_ADMISSION_PODS (default 1500), RAMPART_BENCH_ADMISSION_SLICES (default 3),
# RAMPART_BENCH_ADMISSION_CREATORS (default 200), RAMPART_BENCH_ADMISSION_PACED_SECONDS (default 3);
# it is skipped when kube-apiserver and etcd are not built. The output is also kept in
# bench/bin/last-run.txt.
set -euo pipefail
cd "$(dirname "$0")"

bench=.
if [ "${1:-}" = "-bench" ] && [ -n "${2:-}" ]; then
  bench=$2
elif [ $# -gt 0 ]; then
  echo "usage: $0 [-bench REGEX]" >&2
  exit 2
fi
# The agreement tests that the selected benchmarks rely on (all of them by default).
tests=()
for pair in 'Check|HTTP|Approval:TestAgreement|TestLapsedGrantsDeny' 'Egress:TestEgressPeersAgree' \
  'TokenVerify|RiskPerSignIn:TestIdentityFixtures' 'Vault:TestVaultPeersAgree' \
  'Admission:TestAdmissionAgreement'; do
  if [ "$bench" = . ] || grep -qE "${pair%%:*}" <<<"$bench"; then tests+=("${pair#*:}"); fi
done
run=$(IFS='|'; echo "${tests[*]:-^\$}")

echo "== machine"
go version
echo "nproc: $(nproc)"
grep -m1 'model name' /proc/cpuinfo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== build the OPA peer (github.com/open-policy-agent/opa, version pinned in go.mod)"
go build -o bin/opa github.com/open-policy-agent/opa
bin/opa version | head -1

echo "== build the smokescreen peer (github.com/stripe/smokescreen, version pinned in go.mod)"
go build -o bin/smokescreen github.com/stripe/smokescreen
bin/smokescreen --version

echo "== build the age peer (filippo.io/age, version pinned in go.mod) and the vault's file harness"
go build -o bin/age filippo.io/age/cmd/age
bin/age --version
go build -o bin/vaultfile ./cmd/vaultfile

if [[ " ${tests[*]:-} " == *" TestVaultPeersAgree "* ]]; then
  echo "== Azurite, for the vault's blob-store benchmark (installed once, outside the clone)"
  ../scripts/azurite.sh install
fi

echo "== vet"
go vet ./...

echo "== agreement tests ($run), then the benchmarks matching '$bench' (all: in-process, egress, HTTP, approval-to-allow, identity, weights vault, admission)"
go test -count=1 -timeout 20m -run "$run" -bench "$bench" . 2>&1 | tee bin/last-run.txt
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
