#!/usr/bin/env bash
# Runs Rampart's benchmarks against OPA and smokescreen and prints the ratios (see README.md),
# and the identity benchmarks (credential verification, sign-in risk) against their targets.
#
#   bench/run.sh            # everything: agreement tests, in-process, egress, HTTP, approval-to-allow, identity
#
# Environment: RAMPART_BENCH_HTTP_SECONDS (default 5) is the measured time per server and
# concurrency in the HTTP comparison, RAMPART_BENCH_EGRESS_SECONDS (default 5) the same for the
# egress comparison, RAMPART_BENCH_EGRESS_BULK_MIB (default 256) the size of one bulk transfer.
# The output is also kept in bench/bin/last-run.txt.
set -euo pipefail
cd "$(dirname "$0")"

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

echo "== vet"
go vet ./...

echo "== agreement tests, then every benchmark (in-process, egress, HTTP, approval-to-allow, identity: BenchmarkTokenVerify, BenchmarkRiskPerSignIn)"
go test -count=1 -timeout 20m -run 'TestAgreement|TestLapsedGrantsDeny|TestEgressPeersAgree|TestIdentityFixtures' -bench . . 2>&1 | tee bin/last-run.txt
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
