#!/usr/bin/env bash
# Run the image built by build.sh with podman, on hosts where podman's defaults fail:
#   deploy/image/run.sh [PODMAN-RUN-OPTIONS... --] [QAT-HANDLER-ARGS...]
# e.g. deploy/image/run.sh --version
#      deploy/image/run.sh -v "$PWD/examples/vmis:/vmis:ro" -- render /vmis/vmi-qat.yaml
# It adds --rm (unless -d is given), --network=none, runc as the runtime (crun refuses hybrid
# cgroups), and nofile/nproc ulimits no higher than this shell's hard limits and pid_max:
# without CAP_SYS_RESOURCE podman cannot raise them to its defaults ("error setting rlimit").
set -euo pipefail

IMAGE=$("$(dirname "${BASH_SOURCE[0]}")/build.sh" --print-name)
options=() args=("$@")
for i in "${!args[@]}"; do
    if [ "${args[$i]}" = -- ]; then
        options=("${args[@]:0:$i}") args=("${args[@]:$((i + 1))}")
        break
    fi
done

nofile=$(ulimit -Hn) nproc=$(ulimit -Hu) pid_max=$(cat /proc/sys/kernel/pid_max)
[ "$nofile" != unlimited ] || nofile=1048576
if [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pid_max" ]; then nproc=$pid_max; fi
remove=(--rm)
for option in "${options[@]}"; do
    case $option in -d | --detach) remove=() ;; esac
done
exec podman run "${remove[@]}" --runtime runc --network=none \
    --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc" \
    "${options[@]}" "$IMAGE" "${args[@]}"
