#!/usr/bin/env bash
# The main job on the embedded default: install what is missing (deploy/bootstrap.sh),
# then run `qat-handler demo`: the agent on libvirt's in-process test:///default
# hypervisor and a simulated QAT host (C62x VFs on vfio-pci) with the example VMIs.
# Needs no cluster, no QAT card and no running libvirtd. Extra arguments go to the demo.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$REPO/deploy/bootstrap.sh"
exec "$REPO/.venv/bin/qat-handler" demo "$@"
