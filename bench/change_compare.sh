#!/usr/bin/env bash
# Interleaved rounds of `rampart change verify` and `gittuf verify-ref` over equivalent histories
# (DESIGN.md section 6): prints each round's times, their ratio, and the load average.
#
#   RAMPART_BENCH_CHANGE_DIR=/tmp/h go test -run XXX -bench ChangeVerify -benchtime 1x .   # keeps /tmp/h/infra
#   GITTUF_KEEP=/tmp/g GITTUF_BIN=… ./gittuf_change.sh 10000                              # keeps /tmp/g/repo
#   ./change_compare.sh /tmp/h /tmp/g [rounds]
set -euo pipefail
h=$1 g=$2 rounds=${3:-3}
rampart=${RAMPART_BIN:-$(dirname "$0")/bin/rampart}
gittuf=${GITTUF_BIN:?set GITTUF_BIN}
now() { date +%s.%N; }
for r in $(seq 1 "$rounds"); do
  t0=$(now); "$rampart" change verify --repo "$h/infra" --repository infra --ref refs/heads/main --key "$h/ledger.pub" >/dev/null; t1=$(now)
  (cd "$g/repo" && "$gittuf" verify-ref main >/dev/null 2>&1); t2=$(now)
  a=$(echo "$t1 - $t0" | bc); b=$(echo "$t2 - $t1" | bc)
  echo "round $r: rampart change verify ${a}s, gittuf verify-ref ${b}s, gittuf/rampart $(echo "scale=2; $b / $a" | bc); load average $(cut -d' ' -f1-3 /proc/loadavg)"
done
