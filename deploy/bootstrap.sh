#!/usr/bin/env bash
# Prepare a Debian 12 machine for qat-handler, idempotently:
#   1. the system packages (apt, only the ones that are missing; `apt-get update` only then);
#   2. a virtualenv at $REPO/.venv with the package installed editable
#      (rebuilt only when setup.cfg/pyproject.toml or the Python changed; see the stamp file);
#   3. with --tests: the Debian kernels and busybox the nested VFIO test boots (apt-get download).
#
# usage: deploy/bootstrap.sh [--tests] [--no-apt] [--recreate]
#   --tests     also install the test extras (pytest, linters, ...) and the image build tools
#   --no-apt    do not touch apt; only warn about missing packages
#   --recreate  throw away .venv and build it again
# env: PYTHON (default: python3 on PATH), QAT_HANDLER_VENV (default: $REPO/.venv)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${QAT_HANDLER_VENV:-$REPO/.venv}
STAMP=$VENV/.qat-handler-bootstrap

with_tests=0 use_apt=1 recreate=0
for arg in "$@"; do
    case $arg in
        --tests) with_tests=1 ;;
        --no-apt) use_apt=0 ;;
        --recreate) recreate=1 ;;
        -h | --help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "bootstrap: unknown option: $arg (try --help)" >&2; exit 2 ;;
    esac
done

say() { printf 'bootstrap: %s\n' "$*"; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

# Run "$@" with stdout+stderr in a log; show the log's tail only if it fails.
quietly() {
    local log rc=0
    log=$(mktemp "${TMPDIR:-/tmp}/qat-bootstrap.XXXXXX")
    "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        printf 'bootstrap: error: `%s` failed (exit %d); last lines of its output:\n' "$*" "$rc" >&2
        tail -n 40 "$log" >&2
        rm -f "$log"
        return "$rc"
    fi
    rm -f "$log"
}

# ---------------------------------------------------------------- 1. system packages
packages=(
    libvirt-daemon-system libvirt-dev pkg-config gcc  # libvirtd, and what building libvirt-python needs
    libc6-dev                                         # C headers, and the static libc of the nested test's L2 init
    qemu-system-x86 qemu-utils                        # the hypervisor and qemu-img
    skopeo                                            # containerDisk images fetched on bare metal
    umoci docker-registry                             # tests: OCI layouts and a local registry
    libxml2-utils                                     # xmllint, used by virt-xml-validate
    cpio                                              # initramfs inspection
    jq                                                # the README's `doctor -o json | jq` line, run by a test
    dnsmasq-base                                      # DHCP and DNS of libvirt's NAT network (guest networking)
    iputils-ping                                      # the real-guest network test pings the guest
    tmux                                              # the console test types into a real terminal
    systemd                                           # systemd-analyze, journald
    ca-certificates                                   # pip over https
)
if [ "$with_tests" -eq 1 ]; then
    # deploy/image/build.sh, which the image tests run: a Debian root, an OCI image, podman to run it
    # (runc: crun refuses hybrid cgroups), and pip's wheel to install wheels inside the root.
    packages+=(mmdebstrap buildah podman runc python3-pip-whl)
fi

PYTHON=${PYTHON:-$(command -v python3 || true)}
if [ -z "$PYTHON" ]; then
    packages+=(python3 python3-venv python3-dev)
else
    # Debian's own python3 needs python3-venv for `-m venv` and python3-dev for C extensions;
    # another python (pyenv, ...) usually brings both, so ask it rather than guess.
    case $(readlink -f "$PYTHON") in /usr/bin/*) packages+=(python3-venv python3-dev) ;; esac
    probe=$("$PYTHON" -c 'import importlib.util as u, os, sysconfig
print("venv" if u.find_spec("ensurepip") and u.find_spec("venv") else "no-venv",
      "dev" if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else "no-dev")' \
        2>/dev/null || true)
    [[ $probe == venv\ * ]] || packages+=(python3-venv)
    [[ $probe == *\ dev ]] || packages+=(python3-dev)
fi

# One dpkg-query for all of them (it still lists the known ones if some are unknown).
installed=" $(dpkg-query -W -f='${Package}=${db:Status-Status} ' "${packages[@]}" 2>/dev/null || true)"
missing=()
for p in "${packages[@]}"; do
    [[ $installed == *" $p=installed "* || " ${missing[*]} " == *" $p "* ]] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$use_apt" -eq 0 ]; then
        say "warning: missing packages (not installed because of --no-apt): ${missing[*]}" >&2
    else
        [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]}; run as root to install them"
        say "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        quietly apt-get update -q
        quietly apt-get install -y -q --no-install-recommends "${missing[@]}"
        PYTHON=${PYTHON:-$(command -v python3 || true)}
    fi
fi
[ -n "$PYTHON" ] || die "no python3 on PATH"

# ---------------------------------------------------------------- 2. the virtualenv
py_id=$("$PYTHON" -c 'import sys; print(sys.version_info >= (3, 11), sys.executable, sys.version.split()[0])') ||
    die "$PYTHON does not run"
case $py_id in True\ *) ;; *) die "Python >= 3.11 is needed; $PYTHON is ${py_id##* }" ;; esac
py_id=${py_id#True }

deps_hash=$(cat "$REPO/setup.cfg" "$REPO/pyproject.toml" | sha256sum | cut -d' ' -f1)
stamp_value() { sed -n "s/^$1=//p" "$STAMP" 2>/dev/null || true; }

if [ "$recreate" -eq 1 ] || [ "$(stamp_value python)" != "$py_id" ] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
    say "creating $VENV (python ${py_id##* })"
    rm -rf "$VENV"
    quietly "$PYTHON" -m venv "$VENV"
    rm -f "$STAMP"
fi

# Once the test extras are in, keep them in: --tests is a superset.
extras=none
if [ "$with_tests" -eq 1 ] || [ "$(stamp_value extras)" = test ]; then extras=test; fi

if [ "$(stamp_value deps)" = "$deps_hash" ] && { [ "$extras" = none ] || [ "$(stamp_value extras)" = test ]; }; then
    say "up to date ($VENV)"
else
    target=$REPO label=.
    if [ "$extras" = test ]; then target="$REPO[test]" label=".[test]"; fi
    say "pip install -e $label into $VENV"
    start=$SECONDS
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
        quietly "$VENV/bin/python" -m pip install -q -e "$target"
    printf 'python=%s\ndeps=%s\nextras=%s\n' "$py_id" "$deps_hash" "$extras" >"$STAMP.tmp"
    mv "$STAMP.tmp" "$STAMP"
    say "venv ready in $((SECONDS - start)) s"
fi

# ---------------------------------------------------------------- 3. the nested test's guests
# Kernels (generic for L1, cloud for L2) and busybox, as .debs from apt (`apt-get download`
# into the test cache, unpacked once per kernel version): see tests/support/nested/packages.py.
if [ "$with_tests" -eq 1 ] && [ "$use_apt" -eq 1 ]; then
    (cd "$REPO" && quietly "$VENV/bin/python" -m tests.support.nested.packages) ||
        die "could not fetch the nested test's kernel and busybox packages"
fi
