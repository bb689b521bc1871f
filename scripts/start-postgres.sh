#!/usr/bin/env bash
# Starts a throwaway local PostgreSQL server for tests and prints its URL (the only line on stdout):
#
#   url=$(bash scripts/start-postgres.sh --owner-pid $$)   # stopped and deleted when this shell exits
#   url=$(bash scripts/start-postgres.sh)                  # runs until `pg_ctl -D <dir>/data stop` (on stderr)
#
# Uses the Debian `postgresql` binaries (installs the package when `initdb` is missing and we are
# root). The cluster lives in a fresh temp dir, trusts local connections, listens on 127.0.0.1 on a
# free port, and runs with fsync off (test data only). As root, the server runs as the `postgres`
# user (initdb refuses root).
set -euo pipefail

owner_pid=""
while [ $# -gt 0 ]; do
  case "$1" in
    --owner-pid) owner_pid="$2"; shift 2 ;;
    *) echo "usage: $0 [--owner-pid PID]" >&2; exit 2 ;;
  esac
done

find_bin() {
  local d
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"; return 0
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}

if ! bin=$(find_bin); then
  if [ "$(id -u)" = 0 ]; then
    echo "start-postgres: installing the postgresql package" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
    bin=$(find_bin) || { echo "start-postgres: no initdb after install" >&2; exit 1; }
  else
    echo "start-postgres: initdb/pg_ctl not found; install the postgresql package" >&2; exit 1
  fi
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' \
    2>/dev/null && return 0
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}

dir=$(mktemp -d /tmp/kray-pg.XXXXXX)
chmod 755 "$dir"
run=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  chown postgres "$dir"
  run=(runuser -u postgres --)
fi

"${run[@]}" "$bin/initdb" -D "$dir/data" -U kray -A trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 || {
  cat "$dir/initdb.log" >&2; exit 1; }

started=""
for _ in 1 2 3 4 5; do
  port=$(free_port)
  if "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
      start >&2; then
    started=1; break
  fi
done
[ -n "$started" ] || { echo "start-postgres: server did not start" >&2; cat "$dir/server.log" >&2; exit 1; }

if [ -n "$owner_pid" ]; then
  # Watchdog: stop the server and delete its dir when the owner exits. Detached from our stdout so
  # a caller reading our output sees EOF as soon as we exit.
  nohup setsid bash -c '
    while kill -0 "$1" 2>/dev/null; do sleep 1; done
    '"${run[*]}"' "$2/pg_ctl" -D "$3/data" -m immediate stop >/dev/null 2>&1
    rm -rf "$3"' _ "$owner_pid" "$bin" "$dir" </dev/null >/dev/null 2>&1 &
  echo "start-postgres: server in $dir, stopped when pid $owner_pid exits" >&2
else
  echo "start-postgres: server in $dir; stop with: ${run[*]} $bin/pg_ctl -D $dir/data stop && rm -rf $dir" >&2
fi

echo "postgres://kray@127.0.0.1:$port/postgres"
