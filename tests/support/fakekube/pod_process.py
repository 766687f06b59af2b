"""How the fake kubelet turns one container of a pod spec into a local process.

There are no images and no mount namespaces. The command is the container's ``command``
plus ``args`` (``$(VAR)`` expanded), with ``qat-handler`` (also the image's entrypoint,
used when ``command`` is empty) run as ``python -m handler`` from this checkout. The
environment is the container's ``env`` (literal values and downward-API ``fieldRef``s)
plus the device plugins' variables. Volumes are directories on the node: a ``hostPath``
``/p`` is ``<node root>/p``, an ``emptyDir`` a directory of the pod's own; ``subPath`` and
``subPathExpr`` are created inside them as kubelet does. Where an env value or argument is
a path under a ``mountPath``, it is rewritten to that directory on the node, so the
process finds what the container would have found there.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .resources import Obj

REPO = Path(__file__).resolve().parents[3]
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_FIELD = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


class SpecError(Exception):
    """The pod cannot be started as written (kubelet's CreateContainerConfigError and friends)."""


class MountPending(Exception):
    """A ``hostPath`` of ``type: Directory`` does not exist yet (kubelet retries: FailedMount)."""


@dataclass(frozen=True)
class ContainerLaunch:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: unknown references stay as written."""
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def field_value(pod: Obj, path: str) -> str:
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    match = _FIELD.match(path)
    if match is None:
        raise SpecError(f"fieldRef {path!r} is not supported by the fake kubelet")
    return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))


def container_env(pod: Obj, container: Obj) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        name, source = entry["name"], entry.get("valueFrom")
        if source is None:
            env[name] = expand(str(entry.get("value", "")), env)
        elif "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
        else:
            raise SpecError(f"env {name}: only value and fieldRef are supported by the fake kubelet")
    return env


def volume_dirs(pod: Obj, node_root: Path, pod_dir: Path) -> dict[str, Path]:
    dirs: dict[str, Path] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        name = volume["name"]
        if "hostPath" in volume:
            host = volume["hostPath"]
            path = node_root / str(host["path"]).lstrip("/")
            kind = host.get("type") or ""
            if kind == "Directory" and not path.is_dir():
                raise MountPending(
                    f'MountVolume.SetUp failed for volume "{name}" : hostPath type check failed: '
                    f"{host['path']} is not a directory"
                )
            if kind == "DirectoryOrCreate":
                path.mkdir(parents=True, exist_ok=True)
            dirs[name] = path
        elif "emptyDir" in volume:
            dirs[name] = pod_dir / "volumes" / name
            dirs[name].mkdir(parents=True, exist_ok=True)
        else:
            dirs[name] = pod_dir / "volumes" / name  # configMap, secret, projected: an empty directory
            dirs[name].mkdir(parents=True, exist_ok=True)
    return dirs


def mount_map(container: Obj, volumes: dict[str, Path], env: dict[str, str]) -> list[tuple[str, Path]]:
    """(mountPath, directory on the node), longest mountPath first."""
    mounts = []
    for mount in container.get("volumeMounts") or []:
        if mount["name"] not in volumes:
            raise SpecError(f"volumeMount {mount['name']!r} names no volume of the pod")
        base = volumes[mount["name"]]
        sub = mount.get("subPath") or expand(mount.get("subPathExpr") or "", env)
        target = base / sub if sub else base
        if sub and not target.exists():
            target.mkdir(parents=True)
            target.chmod(base.stat().st_mode & 0o7777)  # kubelet gives a new subPath its parent's mode
        mounts.append((str(mount["mountPath"]).rstrip("/") or "/", target))
    return sorted(mounts, key=lambda m: len(m[0]), reverse=True)


def rewrite(value: str, mounts: list[tuple[str, Path]]) -> str:
    for mount_path, target in mounts:
        if value == mount_path or value.startswith(mount_path + "/"):
            return str(target) + value[len(mount_path) :]
    return value


def command_line(container: Obj, env: dict[str, str]) -> list[str]:
    command = [expand(str(c), env) for c in container.get("command") or ["qat-handler"]]
    args = [expand(str(a), env) for a in container.get("args") or []]
    if command[0] in ("qat-handler", "/usr/local/bin/qat-handler"):
        command = [sys.executable, "-m", "handler", *command[1:]]
    return command + args


def plan_container(
    pod: Obj, container: Obj, device_vars: dict[str, str], node_root: Path, pod_dir: Path
) -> ContainerLaunch:
    """Everything needed to start ``container``; raises SpecError or MountPending."""
    env = container_env(pod, container)
    mounts = mount_map(container, volume_dirs(pod, node_root, pod_dir), env)
    env = {name: rewrite(value, mounts) for name, value in env.items()}
    argv = [rewrite(arg, mounts) for arg in command_line(container, env)]
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOSTNAME": pod["metadata"]["name"]}
    return ContainerLaunch(
        container["name"], argv, {**base, **env, **device_vars}, pod_dir / f"{container['name']}.log"
    )
