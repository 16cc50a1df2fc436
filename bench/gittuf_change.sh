#!/usr/bin/env bash
# gittuf's verification of a history equivalent to BenchmarkChangeVerify's (change_test.go): a
# repository whose main has N updates, each recorded in gittuf's reference state log (RSL) and
# signed by a key the policy authorizes for refs/heads/main, then `gittuf verify-ref main` timed
# three times. gittuf is built from a source snapshot (the Go module proxy refuses it here, see
# RESULTS.md): GITTUF_BIN names the binary.
#
#   GITTUF_BIN=/path/to/gittuf bench/gittuf_change.sh [N]     # N defaults to 10000
set -euo pipefail
n=${1:-10000}
gittuf=${GITTUF_BIN:?set GITTUF_BIN to a gittuf binary}
if [ -n "${GITTUF_KEEP:-}" ]; then
  work=$GITTUF_KEEP; mkdir -p "$work"   # kept for change_compare.sh
else
  work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fi
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
mkdir "$work/keys" "$work/repo"
for k in root policy developer; do ssh-keygen -q -t ecdsa -N "" -f "$work/keys/$k"; done
cd "$work/repo"
git init -q -b main
git config user.name Dev; git config user.email dev@example.com
git config gpg.format ssh; git config user.signingkey "$work/keys/developer"; git config commit.gpgsign true
echo root > README; git add -A; git commit -q -m root
"$gittuf" trust init -k ../keys/root
"$gittuf" trust add-policy-key -k ../keys/root --policy-key ../keys/policy.pub
"$gittuf" policy init -k ../keys/policy --policy-name targets
"$gittuf" policy add-person -k ../keys/policy --person-ID developer --public-key ../keys/developer.pub
"$gittuf" policy add-rule -k ../keys/policy --rule-name protect-main --rule-pattern git:refs/heads/main --authorize developer
"$gittuf" policy stage --local-only 2>/dev/null
"$gittuf" policy apply --local-only 2>/dev/null
start=$(date +%s)
for i in $(seq 1 "$n"); do
  mkdir -p deploy; echo "replicas: $i" > "deploy/f$((i % 100)).yaml"
  git add -A; git commit -q -m "update $i"
  "$gittuf" rsl record main --local-only >/dev/null 2>&1
done
echo "gittuf: $n updates recorded in $(( $(date +%s) - start ))s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in 1 2 3; do
  t0=$(date +%s.%N)
  "$gittuf" verify-ref main >/dev/null 2>&1
  t1=$(date +%s.%N)
  echo "gittuf verify-ref main, $n updates, round $round: $(echo "$t1 - $t0" | bc)s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
done
