#!/usr/bin/env bash
# Build the one container image of qat-handler (agent, launcher, controller, webhook: the
# entrypoint is `qat-handler`, the subcommand picks the role) without any container registry:
#   1. a base image, from Debian packages (mmdebstrap minbase + python3-libvirt, python3-lxml)
#      and, for the requirements in setup.cfg that Debian's versions do not meet, wheels
#      fetched by this host's pip (pinned to the venv's versions, the ones the tests ran
#      with) and installed by pip inside the root;
#   2. the image: the base plus the project's own wheel (`pip wheel --no-deps`).
# Each step is skipped when its inputs did not change (the image carries a hash of them in
# the label io.qat-handler.inputs), so a second run takes a few seconds.
#
# usage: deploy/image/build.sh [--archive PATH] [--print-name] [--force]
#   --archive PATH  also write the image as an OCI archive (load it with `podman load -i PATH`)
#   --print-name    print the image's name and exit
#   --force         rebuild both steps
# env: PYTHON (a python with pip; default .venv/bin/python, else python3),
#      QAT_IMAGE_WORK (scratch and cache; default /var/tmp/qat-handler-image), MIRROR (Debian)
# Needs root, mmdebstrap, buildah, podman, runc and python3-pip-whl (deploy/bootstrap.sh --tests).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$REPO/handler/__init__.py")
IMAGE=qat-handler:$VERSION # containers-storage shows it as localhost/qat-handler:VERSION
DEBS=python3,python3-libvirt,python3-lxml,busybox-static  # busybox: the containerDisk containers of launcher pods run it
SUITE=bookworm
WORK=${QAT_IMAGE_WORK:-/var/tmp/qat-handler-image}
LABEL=io.qat-handler.inputs

archive="" force=0
while [ $# -gt 0 ]; do
    case $1 in
        --archive) archive=$(realpath -m "${2:?--archive needs a path}"); shift ;;
        --print-name) echo "$IMAGE"; exit 0 ;;
        --force) force=1 ;;
        -h | --help) sed -n '2,19s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown option: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { printf 'image: %s\n' "$*"; }
die() { printf 'image: error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap and buildah need it)"
for tool in mmdebstrap buildah podman; do
    command -v "$tool" >/dev/null || die "$tool is missing; fix: apt-get install mmdebstrap buildah podman runc (or deploy/bootstrap.sh --tests)"
done
PYTHON=${PYTHON:-$( [ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || command -v python3)}
PIP_WHEEL=$(ls /usr/share/python-wheels/pip-*.whl 2>/dev/null | tail -n 1 || true)
[ -n "$PIP_WHEEL" ] || die "pip's wheel is missing from /usr/share/python-wheels; fix: apt-get install python3-pip-whl"
MIRROR=${MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

mkdir -p "$WORK"
exec 9>"$WORK/lock"
flock 9 # one build at a time on this machine (parallel test runs share the cache)

hash_of() { sha256sum | cut -c1-16; }
quietly() { # run "$@" with its output in a log; show the log's tail only if it fails
    local log=$WORK/last-step.log
    "$@" >"$log" 2>&1 || { tail -n 30 "$log" >&2; die "failed: $*"; }
}
RUN=(buildah run --isolation chroot) # host network, unused: pip runs with --no-index

# ---------------------------------------------------------------- inputs
requires=$("$PYTHON" - "$REPO/setup.cfg" <<'EOF'
import configparser, sys
cfg = configparser.ConfigParser()
cfg.read(sys.argv[1])
print("\n".join(line for line in cfg["options"]["install_requires"].split("\n") if line.strip()))
EOF
)
# The venv's versions, the ones the tests ran with; pip chooses only where it has none.
constraints=$("$PYTHON" -m pip freeze --exclude-editable 2>/dev/null | grep -v '^#' || true)
# The base depends on its own recipe (step 1 below), not on the rest of this script.
base_recipe=$(sed -n '/-- 1\. the base image/,/-- 2\. the project/p' "$0")
base_key=$( { echo "$base_recipe"; cat "$HERE/unmet_requirements.py"; echo "$DEBS $SUITE"; echo "$requires"; echo "$constraints"; } | hash_of)
BASE=localhost/qat-handler-base:$base_key
sources=(setup.cfg pyproject.toml README.md)
mapfile -t -O 3 sources < <(cd "$REPO" && find handler templates -type f \( -name '*.py' -o -name '*.xml' -o -name py.typed \) | sort)
key=$( { echo "$base_key"; (cd "$REPO" && sha256sum "${sources[@]}"); } | hash_of)

current=$(podman image inspect --format "{{index .Labels \"$LABEL\"}}" "$IMAGE" 2>/dev/null || true)
if [ "$force" -eq 0 ] && [ "$current" = "$key" ]; then
    say "$IMAGE is up to date ($key)"
else
    # ------------------------------------------------------------ 1. the base image
    if [ "$force" -eq 1 ] || ! podman image exists "$BASE"; then
        rootfs=$WORK/rootfs-$(echo "$DEBS $SUITE $MIRROR" | hash_of).tar
        if [ "$force" -eq 1 ] || [ ! -s "$rootfs" ]; then
            say "root filesystem: mmdebstrap $SUITE minbase + $DEBS"
            # merged-usr hook: no usrmerge (which pulls perl); no docs, man pages or locales.
            quietly mmdebstrap --format=tar --variant=minbase --include="$DEBS" \
                --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
                --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
                --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
                --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
                --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
                "$SUITE" "$rootfs.tmp" "$MIRROR"
            mv "$rootfs.tmp" "$rootfs"
        fi
        say "base image $BASE"
        buildah rm qat-handler-base-build >/dev/null 2>&1 || true
        ctr=$(buildah from --name qat-handler-base-build scratch)
        buildah add -q "$ctr" "$rootfs" / >/dev/null
        stage=$WORK/stage-base
        rm -rf "$stage" && mkdir -p "$stage/wheels"
        cp "$PIP_WHEEL" "$stage/pip.whl"
        cp "$HERE/unmet_requirements.py" "$stage/"
        echo "$requires" >"$stage/requires.txt"
        buildah copy -q "$ctr" "$stage" /tmp/build >/dev/null
        unmet_text=$("${RUN[@]}" "$ctr" -- python3 /tmp/build/unmet_requirements.py /tmp/build/pip.whl /tmp/build/requires.txt)
        mapfile -t unmet <<<"$unmet_text"
        [ -n "$unmet_text" ] || unmet=()
        if [ ${#unmet[@]} -gt 0 ]; then
            say "from wheels (Debian's versions do not fit): ${unmet[*]}"
            echo "$constraints" >"$stage/constraints.txt"
            quietly "$PYTHON" -m pip download --only-binary=:all: -d "$stage/wheels" -c "$stage/constraints.txt" "${unmet[@]}"
            buildah copy -q "$ctr" "$stage/wheels" /tmp/build/wheels >/dev/null
            quietly "${RUN[@]}" "$ctr" -- python3 /tmp/build/pip.whl/pip install --no-index --find-links /tmp/build/wheels \
                --break-system-packages --no-cache-dir --root-user-action=ignore "${unmet[@]}"
        fi
        "${RUN[@]}" "$ctr" -- rm -rf /tmp/build
        old_bases=$(podman images --format '{{.Repository}}:{{.Tag}}' localhost/qat-handler-base | grep -v ":$base_key\$" || true)
        buildah commit -q --rm "$ctr" "$BASE" >/dev/null
        for old in $old_bases; do podman rmi "$old" >/dev/null 2>&1 || true; done
        rm -rf "$stage"
    fi

    # ------------------------------------------------------------ 2. the project on top
    say "image $IMAGE ($key)"
    stage=$WORK/stage-project
    rm -rf "$stage" && mkdir -p "$stage/src" "$stage/dist"
    (cd "$REPO" && cp --parents "${sources[@]}" "$stage/src/") # built outside the checkout: no build/ left there
    quietly "$PYTHON" -m pip wheel --no-deps -w "$stage/dist" "$stage/src"
    cp "$PIP_WHEEL" "$stage/dist/pip.whl"
    buildah rm qat-handler-build >/dev/null 2>&1 || true
    ctr=$(buildah from --name qat-handler-build "$BASE")
    buildah copy -q "$ctr" "$stage/dist" /tmp/build >/dev/null
    quietly "${RUN[@]}" "$ctr" -- sh -c 'python3 /tmp/build/pip.whl/pip install --no-index --no-deps \
        --break-system-packages --no-cache-dir --root-user-action=ignore /tmp/build/qat_handler-*.whl &&
        python3 /tmp/build/pip.whl/pip check && rm -rf /tmp/build'
    buildah config --entrypoint '["/usr/local/bin/qat-handler"]' --cmd '["--help"]' --workingdir / \
        --env PYTHONDONTWRITEBYTECODE=1 --env PYTHONUNBUFFERED=1 \
        --label "$LABEL=$key" --label org.opencontainers.image.title=qat-handler \
        --label org.opencontainers.image.version="$VERSION" "$ctr"
    old=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
    buildah commit -q --rm "$ctr" "$IMAGE" >/dev/null
    [ -z "$old" ] || podman rmi "$old" >/dev/null 2>&1 || true # untagged now; still used: kept
    rm -rf "$stage"
fi

if [ -n "$archive" ]; then
    cached=$WORK/qat-handler-$key.oci.tar # saving takes a while: kept for the next run with these inputs
    if [ ! -s "$cached" ]; then
        rm -f "$WORK"/qat-handler-*.oci.tar
        podman save -q --format oci-archive -o "$cached.tmp" "$IMAGE"
        mv "$cached.tmp" "$cached"
    fi
    cp "$cached" "$archive"
    say "wrote $archive"
fi
