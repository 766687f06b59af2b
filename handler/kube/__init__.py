"""Kubernetes mode: VMIs from the API server, devices from the launcher's handoff, status and
Events back to the API. Everything else is shared with bare metal."""
