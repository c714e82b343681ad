#!/usr/bin/env bash
# Make this machine ready for `make test`: Debian packages, the `postgres` and
# `mysql` system users, and the project's virtualenv (.venv) with `pip install -e .[test]`.
#
# Idempotent and fast when everything is present: apt-get runs only when a package
# is missing, pip only when setup.cfg/pyproject.toml/setup.py or the C accelerator's
# source changed since the last install (or its build is missing).
# It never starts the machine's PostgreSQL/MariaDB services: the tests start their own
# throwaway servers.
#
# Environment: PYTHON=/path/to/python3 picks the interpreter for a new .venv
# (default: `python3` on PATH, which must be >= 3.11).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'bootstrap: %s\n' "$*" >&2; }

APT_PACKAGES=(python3 python3-venv python3-dev gcc postgresql mariadb-server mariadb-client
              procps make git)

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root to run: $*"
        exit 1
    fi
}

is_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

install_apt_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0

    log "installing missing Debian packages: ${missing[*]}"
    # A policy-rc.d that answers 101 keeps the postgresql/mariadb packages from
    # starting their system services while they are installed.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
        added_policy=1
    fi
    local rc=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || rc=$?
    if [[ $rc -eq 0 ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends "${missing[@]}" || rc=$?
    fi
    [[ $added_policy -eq 1 ]] && as_root rm -f "$policy"
    return "$rc"
}

ensure_system_users() {
    # The Debian packages create both; a machine with server binaries from elsewhere may not.
    if ! id postgres >/dev/null 2>&1; then
        log "creating system user postgres"
        as_root useradd --system --user-group --home-dir /var/lib/postgresql \
            --shell /bin/bash postgres
    fi
    if ! id mysql >/dev/null 2>&1; then
        log "creating system user mysql"
        as_root useradd --system --user-group --home-dir /nonexistent \
            --shell /usr/sbin/nologin mysql
    fi
}

ensure_venv() {
    local python=${PYTHON:-$(command -v python3 || true)}
    if [[ -z $python ]]; then
        log "no python3 on PATH"
        exit 1
    fi
    # A venv whose interpreter no longer runs (python upgraded or moved) is rebuilt.
    if [[ -d .venv ]] && ! .venv/bin/python -c '' >/dev/null 2>&1; then
        log "removing broken .venv"
        rm -rf .venv
    fi
    if [[ ! -x .venv/bin/python ]]; then
        if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            log "$python is $("$python" -V 2>&1); the project needs Python >= 3.11"
            exit 1
        fi
        log "creating .venv with $python ($("$python" -V 2>&1))"
        "$python" -m venv .venv
    fi
}

ensure_project_installed() {
    local stamp=.venv/.bootstrap-stamp want
    # The C accelerator (setup.py) is built in place by the editable install: its
    # source counts too, and a missing build is rebuilt.
    want=$(cat setup.cfg pyproject.toml setup.py connectors/accel/*.[ch] | sha256sum | cut -d' ' -f1)
    if [[ -f $stamp && $(cat "$stamp") == "$want" ]] \
        && .venv/bin/python -c 'import cdc, connectors.accel._accel' 2>/dev/null
    then
        return 0
    fi
    log "pip install -e .[test]"
    .venv/bin/python -m pip install --disable-pip-version-check -q -e '.[test]'
    echo "$want" > "$stamp"
}

install_apt_packages
ensure_system_users
ensure_venv
ensure_project_installed
