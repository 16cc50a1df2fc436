#!/usr/bin/env bash
# Throwaway PostgreSQL for Rampart's tests.
#
#   source scripts/postgres.sh && pg_start    # exports RAMPART_TEST_POSTGRES_DSN
#   pg_stop                                    # stops it and deletes its data
#
# Uses the PostgreSQL server binaries already installed (Debian: /usr/lib/postgresql/*/bin);
# installs the Debian "postgresql" package first if there are none. The cluster lives in a fresh
# temporary directory, listens only on 127.0.0.1, trusts local connections, and is deleted by
# pg_stop. As root, the server runs as the "postgres" user (PostgreSQL refuses to run as root).

pg_find_bindir() {
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && { echo "$d"; return 0; }
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && { echo "$d"; return 0; }
  done
  return 1
}

pg_install() {
  echo "postgres.sh: no PostgreSQL server found; installing the Debian postgresql package" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
}

pg_start() {
  local bindir
  bindir=$(pg_find_bindir) || { pg_install && bindir=$(pg_find_bindir); } || {
    echo "postgres.sh: PostgreSQL server binaries not found and could not be installed" >&2
    return 1
  }
  PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/rampart-pg.XXXXXX")
  local run=()
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    chown postgres "$PG_DIR"
    run=(runuser -u postgres --)
  fi
  chmod 700 "$PG_DIR"
  "${run[@]}" "$bindir/initdb" -D "$PG_DIR/data" -U postgres --auth=trust --no-sync -E UTF8 >"$PG_DIR/initdb.log" 2>&1 || {
    cat "$PG_DIR/initdb.log" >&2; return 1; }
  local port try
  for try in 1 2 3 4 5 6 7 8; do
    port=$((20000 + RANDOM % 30000))
    if "${run[@]}" "$bindir/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 \
      -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null; then
      PG_PORT=$port
      PG_BINDIR=$bindir
      PG_RUN=("${run[@]}")
      export RAMPART_TEST_POSTGRES_DSN="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
      echo "postgres.sh: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $PG_DIR)" >&2
      return 0
    fi
  done
  cat "$PG_DIR/server.log" >&2
  return 1
}

pg_stop() {
  [ -n "${PG_DIR:-}" ] || return 0
  "${PG_RUN[@]}" "$PG_BINDIR/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
  PG_DIR=""
}
