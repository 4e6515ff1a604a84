#!/usr/bin/env bash
# Make this checkout runnable: system services (when missing and we may
# install them), then a virtualenv in .venv with the project and its dev
# tools. Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

need_apt=()
command -v pg_ctlcluster >/dev/null 2>&1 || [ -n "${DATABASE_URL:-}${SUPABASE_DB_URL:-}" ] || need_apt+=(postgresql)
command -v redis-server >/dev/null 2>&1 || [ -n "${REDIS_URL:-}" ] || need_apt+=(redis-server)
# The tests run their database paths a second time through pgbouncer; the
# demo does not need it, so only root installs it here (`mediation dev up
# --services pooler` names the package when it is missing).
if [ "$(id -u)" = 0 ] && ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
  need_apt+=(pgbouncer)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ${need_apt[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    if [[ " ${need_apt[*]} " == *" postgresql "* ]]; then
      # A cluster we just installed for local development: let the local
      # user `postgres` in over loopback without a password, as the default
      # DATABASE_URL expects (the first matching pg_hba line wins).
      for hba in /etc/postgresql/*/main/pg_hba.conf; do
        grep -q "mediation dev" "$hba" || sed -i '1i host all postgres 127.0.0.1/32 trust  # mediation dev\nhost all postgres ::1/128 trust  # mediation dev' "$hba"
      done
      for dir in /etc/postgresql/*; do  # a running cluster re-reads pg_hba.conf
        pg_ctlcluster --skip-systemctl-redirect "$(basename "$dir")" main reload 2>/dev/null || true
      done
    fi
  else
    echo "bootstrap: missing ${need_apt[*]}; install them (e.g. sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi

# promtool (Debian's prometheus package) unit-tests the alert rules and
# checks the scrape config (tests/test_promtool.py; under CI a missing
# promtool fails the tests). Only the tool is wanted: no recommended
# node exporter, and no Prometheus service left listening on :9090 (a
# temporary policy-rc.d refuses the start where none is in place already).
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing prometheus (Debian package) for promtool"
    own_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod 755 /usr/sbin/policy-rc.d
      own_policy=yes
    fi
    status=0
    { apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
      || status=$?
    [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
    [ "$status" = 0 ] || exit "$status"
  else
    echo "bootstrap: no promtool; the alert rule tests need it (apt-get install prometheus)" >&2
  fi
fi

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "bootstrap: creating .venv and installing the project (first run takes a minute)"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  # dev includes the extras `local` (the broker and S3 server of `mediation
  # dev up`, the demo and the tests) and `reports` (the peak report's charts).
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# The compiled rules (mypyc; docs/development.md, "The compiled build"):
# rebuilt only when their sources changed since the last build (a hash
# stamp). The tests hold it byte-identical to the interpreted rules, which
# run by default until the compiled build is faster.
if ! command -v cc >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "bootstrap: installing gcc python3-dev (Debian packages) for the compiled rules"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc python3-dev >/dev/null
fi
if command -v cc >/dev/null 2>&1; then
  .venv/bin/python -m mediation.compile --quiet \
    || echo "bootstrap: the compile of the rules failed (build/mypyc.log); only the interpreted rules run" >&2
else
  echo "bootstrap: no C compiler; only the interpreted rules run (no compiled build)"
fi
