#!/usr/bin/env bash
# Install qat-handler as a systemd service on a bare-metal QAT host (Debian 12, as root).
#
#   deploy/baremetal/install.sh [--prefix /opt/qat-handler] [--root /] [--skip-python]
#
# 1. system packages that are missing (libvirt, QEMU, build tools for libvirt-python);
# 2. a virtualenv at PREFIX/venv with qat-handler installed (not editable), linked as
#    /usr/local/bin/qat-handler, which is the unit's ExecStart;
# 3. the unit, /etc/default/qat-handler (kept if it exists), the sysusers entry, and
#    /etc/qat-handler/vmis for the manifests;
# 4. with --root /: the qat-handler user, and `systemctl enable --now` when systemd runs.
# --root DIR only lays the files out under DIR (for packaging and tests); nothing is started.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PREFIX=/opt/qat-handler ROOT=/ SKIP_PYTHON=0
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) PREFIX=$2; shift 2 ;;
        --root) ROOT=$2; shift 2 ;;
        --skip-python) SKIP_PYTHON=1; shift ;;
        -h | --help) sed -n '2,13s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "install: unknown option: $1 (try --help)" >&2; exit 2 ;;
    esac
done
say() { printf 'install: %s\n' "$*"; }
[ "$(id -u)" -eq 0 ] || { echo "install: run as root" >&2; exit 1; }
dest() { printf '%s%s' "${ROOT%/}" "$1"; }

if [ "$SKIP_PYTHON" -eq 0 ]; then
    # The system packages, and a throwaway check that libvirt-python builds here.
    QAT_HANDLER_VENV="$(dest "$PREFIX")/venv" "$REPO/deploy/bootstrap.sh" --recreate
    say "installing qat-handler (not editable) into $(dest "$PREFIX")/venv"
    "$(dest "$PREFIX")/venv/bin/python" -m pip install -q --no-deps --force-reinstall "$REPO"
fi

install -d "$(dest /usr/local/bin)" "$(dest /etc/systemd/system)" "$(dest /usr/lib/sysusers.d)" \
    "$(dest /etc/default)" "$(dest /etc/qat-handler/vmis)"
ln -sfn "$PREFIX/venv/bin/qat-handler" "$(dest /usr/local/bin/qat-handler)"
install -m 0644 "$REPO/systemd/qat-handler.service" "$(dest /etc/systemd/system/qat-handler.service)"
install -m 0644 "$REPO/systemd/qat-handler.sysusers" "$(dest /usr/lib/sysusers.d/qat-handler.conf)"
if [ -e "$(dest /etc/default/qat-handler)" ]; then
    say "keeping the existing /etc/default/qat-handler"
else
    install -m 0644 "$REPO/systemd/qat-handler.default" "$(dest /etc/default/qat-handler)"
fi
say "files in place under $ROOT"

if [ "$ROOT" != / ]; then
    exit 0
fi
systemd-sysusers /usr/lib/sysusers.d/qat-handler.conf
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --now qat-handler.service
    say "started; check it with: systemctl status qat-handler; journalctl -u qat-handler"
else
    say "systemd is not running here; start it later with: systemctl enable --now qat-handler"
fi
say "next: run 'qat-handler doctor' to check the host, then put VMI manifests in /etc/qat-handler/vmis"
