#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run). Run as root on Debian 12:
#   tests/run.sh [pytest arguments...]      e.g. tests/run.sh -m 'not guest' -x
# It installs what is missing (deploy/bootstrap.sh --tests), then runs pytest from the
# repository root, so paths given to it are relative to the root. Tests marked `libvirtd`
# start libvirtd/virtlogd themselves (tests/support/libvirtd.py) when they are not running.
# The exit status is pytest's: non-zero on any failure, and 5 when nothing was collected.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh: run this as root (it installs packages and starts libvirtd)" >&2
    exit 1
fi

deploy/bootstrap.sh --tests

rc=0
.venv/bin/python -m pytest "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
    echo "tests/run.sh: pytest collected no tests; that is a failure" >&2
fi
exit "$rc"
