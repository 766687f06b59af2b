#!/usr/bin/env bash
# Make KubeVirt's QAT example runnable without its registry: an OCI image layout (the agent's
# --image-store) holding an image named exactly as the example's containerDisk reference,
# with the disk under /disk. Give a disk image of your own (qcow2 or raw) to put a bootable
# guest in it; without one, a small blank qcow2 stands in, which is enough for the demo's
# test hypervisor (it boots nothing).
#
#   examples/kubevirt/make-image-store.sh STORE_DIR [DISK_IMAGE]
#   qat-handler demo --vmi-dir examples/kubevirt --image-store STORE_DIR
set -euo pipefail
store=${1:?usage: make-image-store.sh STORE_DIR [DISK_IMAGE]}
disk=${2:-}
reference="registry:5000/kubevirt/fedora-cloud-container-disk-demo:devel"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -z "$disk" ]; then
  disk="$work/disk.qcow2"
  qemu-img create -q -f qcow2 "$disk" 64M
fi
case "$disk" in
  *.qcow2) name=disk.qcow2 ;;
  *) name=disk.img ;;
esac

[ -f "$store/index.json" ] || umoci init --layout "$store"
umoci new --image "$store:$reference"
umoci unpack --rootless --image "$store:$reference" "$work/bundle" >/dev/null
mkdir -p "$work/bundle/rootfs/disk"
cp -- "$disk" "$work/bundle/rootfs/disk/$name"
umoci repack --image "$store:$reference" "$work/bundle"
umoci gc --layout "$store"
echo "image store $store holds $reference (/disk/$name)"
