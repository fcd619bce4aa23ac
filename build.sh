#!/usr/bin/env bash
# lakelens build entry point: setup | test | demo | sql "QUERY" ["QUERY" ...] [--lake PATH] | package [--out DIR]
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.requirements.sha256"

say() { echo "[build] $*" >&2; }
die() { echo "[build] error: $*" >&2; exit 1; }

java_major() {
  # Spark runs $JAVA_HOME/bin/java when JAVA_HOME is set, else the java on PATH.
  local java=java
  [ -n "${JAVA_HOME:-}" ] && java="$JAVA_HOME/bin/java"
  command -v "$java" >/dev/null 2>&1 || { echo 0; return; }
  # `java -version` prints e.g. openjdk version "17.0.15" (or "1.8.0_392" for Java 8).
  "$java" -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'
}

check_java() {
  local major
  major=$(java_major)
  [ "${major:-0}" -ge 17 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "Java 17+ not found (found: ${major:-none}); installing Debian's openjdk-17-jre-headless"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless >/dev/null; }
    [ "$(java_major)" -ge 17 ] && return 0
  fi
  die "Spark needs Java 17+ (found: ${major:-none}). Install it: sudo apt-get install openjdk-17-jre-headless (Debian/Ubuntu), or set JAVA_HOME to a JDK 17+."
}

ensure_chromium() {
  # The report's test opens it in headless Chromium; without one that test is skipped, with a note.
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian's chromium (headless browser for the report's test)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1; } \
      || say "could not install chromium: the report's browser test will be skipped"
  else
    say "no chromium: the report's browser test will be skipped (sudo apt-get install chromium)"
  fi
}

find_python() {
  for p in python3.11 python3.12 python3.10 python3; do
    if command -v "$p" >/dev/null 2>&1 \
      && "$p" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)'; then
      command -v "$p"; return 0
    fi
  done
  die "Python 3.10-3.12 is needed (3.11 recommended) to create .venv."
}

pip_check() {
  # pip check, less the lines about the pins of the packages in requirements-nodeps.txt (at their pinned version):
  # they hold only data and are installed with --no-deps because those pins (torch 1.6, ...) are unmet on purpose.
  # Any other broken requirement still fails.
  local report skip
  report=$("$PY" -m pip check 2>&1) && return 0
  skip=$(sed -nE 's/^([A-Za-z0-9._-]+)==([^ #]+).*/^\1 \2 (has requirement|requires) /p' requirements-nodeps.txt | paste -sd'|')
  report=$(grep -viE "${skip:-^$}" <<<"$report" || true)
  [ -z "$report" ] || { echo "$report"; return 1; }
}

setup() {
  check_java
  local want have=""
  want=$(cat requirements.txt requirements-nodeps.txt | sha256sum | cut -d' ' -f1)
  [ -f "$STAMP" ] && have=$(cat "$STAMP")
  if [ -x "$PY" ] && [ "$want" = "$have" ]; then
    return 0
  fi
  if [ ! -x "$PY" ]; then
    say "creating $VENV"
    "$(find_python)" -m venv "$VENV"
  fi
  say "installing the pinned stack from requirements.txt (first time: a minute or two)"
  "$PY" -m pip install -q --disable-pip-version-check -r requirements.txt 2> >(grep -v "is ignored: it is neither" >&2)
  "$PY" -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt \
    2> >(grep -v "is ignored: it is neither" >&2)
  pip_check >/dev/null || die "pip check failed in $VENV: $(pip_check | head -3)"
  echo "$want" > "$STAMP"
  say "environment ready: $VENV"
}

export PYSPARK_PYTHON="$PY"
export PYSPARK_DRIVER_PYTHON="$PY"

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup)
    setup
    ;;
  test)
    setup
    ensure_chromium
    "$VENV/bin/ruff" check --quiet .
    exec "$PY" -m pytest -q "$@"
    ;;
  demo)
    setup
    exec "$PY" -m jobs.demo "$@"
    ;;
  sql)
    setup
    [ $# -ge 1 ] || die 'usage: ./build.sh sql "QUERY" ["QUERY" ...] [--lake PATH]'
    exec "$PY" -m jobs.sql "$@"
    ;;
  package)
    setup
    exec "$PY" -m jobs.package "$@"
    ;;
  *)
    echo "usage: ./build.sh setup | test [pytest args] | demo [--n N] [--lake PATH] | sql \"QUERY\" [\"QUERY\" ...] [--lake PATH] | package [--out DIR] [--python-prefix PREFIX]" >&2
    exit 2
    ;;
esac
