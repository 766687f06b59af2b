"""The Debian packages the nested test boots, fetched with ``apt-get download`` and unpacked.

* ``linux-image-<abi>-amd64`` for L1: it has the 9p, virtio and vfio modules (the cloud
  flavour has no 9p, so L1 could not see the host's /usr);
* ``linux-image-<abi>-cloud-amd64`` for L2: it boots faster, and has what L2 needs
  (evdev and button for the ACPI power button; /dev/mem for the device's BAR);
* ``busybox-static`` for the L1 initramfs (L2 runs one static program, ``l2_init.c``).

Both kernels come from the same ABI (the one ``linux-image-amd64`` depends on). The .debs
are kept in ``<cache>/nested/debs`` (``deploy/bootstrap.sh --tests`` fetches them ahead of
time with ``python -m tests.support.nested.packages``) and unpacked once per version.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.guest_image import _locked, _make_dir, cache_dir

KERNEL_META = "linux-image-amd64"
BUSYBOX = "busybox-static"

L1_MODULE_TARGETS = ("9p", "9pnet_virtio", "virtio_pci", "vfio_pci", "vfio_iommu_type1")
"""What L1 needs loaded; their dependencies are found from the modules' own ``depends=``."""
L2_MODULES = ("evdev", "button")
"""For the ACPI power button in L2 (when built as modules)."""


class PackageError(RuntimeError):
    """A package could not be fetched or unpacked."""


class MissingFeature(PackageError):
    """A kernel lacks something nested VFIO needs (the test skips, naming it)."""


@dataclasses.dataclass(frozen=True)
class NestedParts:
    """Everything unpacked, by path."""

    l1_kernel: Path
    l1_modules: tuple[Path, ...]
    """In load order: every module after the ones it depends on."""
    l2_kernel: Path
    l2_modules: tuple[Path, ...]
    busybox: Path
    kernel_release: str


def root() -> Path:
    return cache_dir() / "nested"


def ensure_parts() -> NestedParts:
    """Fetch (once) and unpack (once per version) what L1 and L2 boot."""
    base = root()
    _make_dir(base)
    with _locked(base / ".lock"):
        abi = _kernel_abi()
        out = base / f"parts-{abi}"
        meta = out / "parts.json"
        if not meta.is_file():
            debs = fetch_debs(abi)
            _unpack(debs, out, abi)
        return _parts_from(out, json.loads(meta.read_text()))


def fetch_debs(abi: str | None = None) -> dict[str, Path]:
    """The three .debs in ``<cache>/nested/debs``, downloaded if missing."""
    abi = abi or _kernel_abi()
    wanted = {"l1": f"linux-image-{abi}-amd64", "l2": f"linux-image-{abi}-cloud-amd64", "busybox": BUSYBOX}
    debs = root() / "debs"
    _make_dir(debs)
    debs.chmod(0o777)  # apt's _apt user downloads into it
    missing = [pkg for pkg in wanted.values() if not _one_deb(debs, pkg)]
    if missing:
        try:
            _run(["apt-get", "download", "-q", *missing], cwd=debs, what="apt-get download")
        except PackageError:  # stale lists point at files the mirror no longer has: refresh once
            _run(["apt-get", "update", "-qq"], what="apt-get update")
            _run(["apt-get", "download", "-q", *missing], cwd=debs, what="apt-get download")
    found = {role: _one_deb(debs, pkg) for role, pkg in wanted.items()}
    lost = [wanted[role] for role, path in found.items() if path is None]
    if lost:
        raise PackageError(f"apt-get download left no .deb for {', '.join(lost)} in {debs}")
    return {role: path for role, path in found.items() if path is not None}


def _kernel_abi() -> str:
    """``6.1.0-57`` from what ``linux-image-amd64`` depends on, or the newest .deb already fetched."""
    proc = subprocess.run(["apt-cache", "depends", KERNEL_META], capture_output=True, text=True, check=False)
    match = re.search(r"Depends: linux-image-(\d[\w.]*-\d+)-amd64\b", proc.stdout)
    if match:
        return match[1]
    cached = sorted((root() / "debs").glob("linux-image-*-cloud-amd64_*.deb"))
    if cached:
        return cached[-1].name.removeprefix("linux-image-").split("-cloud-amd64")[0]
    raise PackageError(f"apt knows no {KERNEL_META} (run apt-get update) and no kernel .deb is cached")


def _one_deb(folder: Path, package: str) -> Path | None:
    matches = sorted(folder.glob(f"{package}_*.deb"))
    return matches[-1] if matches else None


def _unpack(debs: dict[str, Path], out: Path, abi: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="unpack-", dir=out.parent))
    try:
        for role in ("l1", "l2", "busybox"):
            _run(["dpkg-deb", "-x", str(debs[role]), str(work / role)], what=f"dpkg-deb -x {debs[role].name}")
        l1_release, l2_release = f"{abi}-amd64", f"{abi}-cloud-amd64"
        parts = out.parent / f".{out.name}.new"
        shutil.rmtree(parts, ignore_errors=True)
        for sub in ("l1/kmod", "l2/kmod", "bin"):
            _make_dir(parts / sub)
        shutil.copy(work / "l1" / "boot" / f"vmlinuz-{l1_release}", parts / "l1" / "vmlinuz")
        shutil.copy(work / "l2" / "boot" / f"vmlinuz-{l2_release}", parts / "l2" / "vmlinuz")
        shutil.copy(_busybox_in(work / "busybox"), parts / "bin" / "busybox")
        l1_order = _copy_modules(_modules_dir(work / "l1", l1_release), L1_MODULE_TARGETS, parts / "l1" / "kmod")
        l2_config = (work / "l2" / "boot" / f"config-{l2_release}").read_text()
        l2_wanted = tuple(m for m in L2_MODULES if _built_as_module(l2_config, m))
        l2_order = _copy_modules(_modules_dir(work / "l2", l2_release), l2_wanted, parts / "l2" / "kmod")
        meta = {"release": l1_release, "l1_modules": l1_order, "l2_modules": l2_order}
        (parts / "parts.json").write_text(json.dumps(meta, indent=1) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        parts.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _modules_dir(tree: Path, release: str) -> Path:
    for candidate in (tree / "lib" / "modules" / release, tree / "usr" / "lib" / "modules" / release):
        if candidate.is_dir():
            return candidate / "kernel"
    raise MissingFeature(f"no modules for {release} in the kernel package")


def _busybox_in(tree: Path) -> Path:
    for candidate in (tree / "bin" / "busybox", tree / "usr" / "bin" / "busybox"):
        if candidate.is_file():
            return candidate
    raise PackageError("busybox-static has no bin/busybox")


_CONFIG_SYMBOL = {"evdev": "CONFIG_INPUT_EVDEV", "button": "CONFIG_ACPI_BUTTON"}


def _built_as_module(config: str, module: str) -> bool:
    match = re.search(rf"^{_CONFIG_SYMBOL[module]}=([ym])$", config, re.M)
    if match is None:
        raise MissingFeature(f"the L2 kernel lacks {_CONFIG_SYMBOL[module]}; its ACPI power button cannot work")
    return match[1] == "m"


def _copy_modules(tree: Path, targets: tuple[str, ...], dest: Path) -> list[str]:
    """Copy ``targets`` and what they depend on into ``dest``; return their names in load order."""
    files = {_module_name(p): p for p in tree.rglob("*.ko")}
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name not in files:
            raise MissingFeature(
                f"kernel module {name} (needed for {' -> '.join(chain) or name}) is not in the package"
            )
        for dependency in _depends(files[name]):
            visit(dependency, (*chain, name))
        order.append(name)
        shutil.copy(files[name], dest / f"{name}.ko")

    for target in targets:
        visit(target, ())
    return order


def _module_name(path: Path) -> str:
    return path.name.removesuffix(".ko").replace("-", "_")


def _depends(module: Path) -> list[str]:
    """The ``depends=`` entry of a module's .modinfo section (a NUL-separated string table)."""
    match = re.search(rb"\0depends=([^\0]*)\0", module.read_bytes())
    if match is None or not match[1]:
        return []
    return [name.replace("-", "_") for name in match[1].decode().split(",") if name]


def _parts_from(out: Path, meta: dict[str, object]) -> NestedParts:
    def listed(key: str, folder: Path) -> tuple[Path, ...]:
        names = meta.get(key)
        assert isinstance(names, list)
        return tuple(folder / f"{name}.ko" for name in names)

    return NestedParts(
        l1_kernel=out / "l1" / "vmlinuz",
        l1_modules=listed("l1_modules", out / "l1" / "kmod"),
        l2_kernel=out / "l2" / "vmlinuz",
        l2_modules=listed("l2_modules", out / "l2" / "kmod"),
        busybox=out / "bin" / "busybox",
        kernel_release=str(meta["release"]),
    )


def _run(cmd: list[str], *, what: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
    if proc.returncode != 0:
        raise PackageError(f"{what} failed (exit {proc.returncode}): {(proc.stdout + proc.stderr).strip()}")


if __name__ == "__main__":
    # deploy/bootstrap.sh --tests: fetch and unpack ahead of the test run.
    try:
        parts = ensure_parts()
    except PackageError as error:
        print(f"nested test packages: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"nested test packages ready: kernel {parts.kernel_release}, {root()}")
