"""A throwaway host with systemd as PID 1, for running the real unit under the real manager.

The machines here have no systemd as PID 1, so the host is a container: the project's image
(deploy/image/build.sh), Debian's systemd, and the unit with its files laid out by
``deploy/baremetal/install.sh --root`` exactly as on a bare-metal host. It boots
``/lib/systemd/systemd`` under podman. It runs privileged, because systemd sets up each
service's mount namespace, cgroup and seccomp filter itself. Debian's libvirt-daemon-system
(with its polkit rule) and QEMU run in it too. ``/etc/default/qat-handler`` points the agent
at libvirt's in-process test driver, as an operator would edit it, so most tests need no
guest; the tests of the system libvirtd switch it to ``qemu:///system`` (TCG guests: there
is no KVM in here). Nothing else in the files differs from an installation.
"""

from __future__ import annotations

import hashlib
import resource
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.image.podman import REPO, build, image_name

NAME = "localhost/qat-handler-systemd"
LABEL = "io.qat-handler.inputs"
INSTALL = REPO / "deploy" / "baremetal" / "install.sh"
UNIT_FILES = ("systemd/qat-handler.service", "systemd/qat-handler.default", "systemd/qat-handler.sysusers")
PREFIX = "/opt/qat-handler"
CONNECT = "test:///default"


def _run(*argv: str, timeout: float = 600) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _inputs_key(base_id: str) -> str:
    digest = hashlib.sha256(base_id.encode())
    for path in (*UNIT_FILES, "deploy/baremetal/install.sh", "tests/ops/systemd_host.py"):
        digest.update((REPO / path).read_bytes())
    return digest.hexdigest()[:16]


def host_image() -> str:
    """The image's name; built when the project's image or the unit's files changed."""
    build()
    base = image_name()
    key = _inputs_key(_run("podman", "image", "inspect", "--format", "{{.Id}}", base).strip())
    name = f"{NAME}:{key}"
    if subprocess.run(["podman", "image", "exists", name]).returncode == 0:
        return name
    for old in _run("podman", "images", "--format", "{{.Repository}}:{{.Tag}}", NAME).split():
        subprocess.run(["podman", "rmi", "-f", old], capture_output=True)
    work = f"qat-handler-systemd-{uuid.uuid4().hex[:8]}"
    ctr = _run("buildah", "from", "--name", work, base).strip()
    try:
        install_systemd = (
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends"
            " systemd libvirt-daemon-system dbus qemu-system-x86 >/dev/null && rm -rf /var/lib/apt/lists/*"
        )
        _run("buildah", "run", "--isolation", "chroot", ctr, "--", "sh", "-c", install_systemd)
        root = Path(_run("buildah", "mount", ctr).strip())
        # The image installs into the system Python; install.sh links the entry point from PREFIX's venv.
        venv_bin = root / PREFIX.lstrip("/") / "venv" / "bin"
        venv_bin.mkdir(parents=True)
        (root / "usr/local/bin/qat-handler").rename(venv_bin / "qat-handler")
        _run(str(INSTALL), "--root", str(root), "--prefix", PREFIX, "--skip-python")
        defaults = root / "etc/default/qat-handler"
        text = defaults.read_text()
        assert "--connect qemu:///system" in text
        defaults.write_text(text.replace("--connect qemu:///system", f"--connect {CONNECT}"))
        _run("buildah", "umount", ctr)
        # systemd-sysusers creates the user at boot, from install.sh's entry, as on a real host.
        setup = "systemctl enable qat-handler.service && systemctl mask getty.target"
        _run("buildah", "run", "--isolation", "chroot", ctr, "--", "sh", "-c", setup)
        _run(
            "buildah",
            "config",
            "--entrypoint",
            '["/lib/systemd/systemd"]',
            "--cmd",
            "[]",
            "--label",
            f"{LABEL}={key}",
            ctr,
        )
        _run("buildah", "commit", "-q", ctr, name)
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)
    return name


@dataclass(frozen=True, slots=True)
class SystemdHost:
    container: str

    def sh(self, script: str, timeout: float = 60) -> tuple[int, str]:
        """Run ``script`` as root on the host; its status and output (stdout then stderr)."""
        done = subprocess.run(
            ["podman", "exec", self.container, "sh", "-c", script], capture_output=True, text=True, timeout=timeout
        )
        return done.returncode, done.stdout + done.stderr

    def ok(self, script: str, timeout: float = 60) -> str:
        code, out = self.sh(script, timeout)
        assert code == 0, f"{script!r} failed ({code}):\n{out}"
        return out

    def show(self, *properties: str) -> dict[str, str]:
        """``systemctl show qat-handler`` for these properties."""
        flags = " ".join(f"-p {p}" for p in properties)
        out = self.ok(f"systemctl show qat-handler {flags}")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait(self, what: str, script: str, timeout: float = 60) -> str:
        """Poll ``script`` until it succeeds; its output."""
        deadline = time.monotonic() + timeout
        while True:
            code, out = self.sh(script)
            if code == 0:
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:.0f} s; last output:\n{out}\n{self.journal()}")
            time.sleep(0.2)

    def journal(self, lines: int = 40) -> str:
        return self.sh(f"journalctl -u qat-handler --no-pager -o cat -n {lines}")[1]

    def processes(self, pattern: str) -> list[tuple[str, str]]:
        """(PPid, Uid) of each process whose command line matches the grep ``pattern``. The host has
        no ps; write the pattern so that it does not match itself (``qemu-system-x86[_]64``)."""
        out = self.ok(
            "for p in /proc/[0-9]*; do tr '\\0' ' ' <$p/cmdline 2>/dev/null"
            f" | grep -q '{pattern}'"
            ' && awk \'/^(PPid|Uid):/{printf "%s ", $2} END{print ""}\' $p/status; done; true'
        )
        return [(fields[0], fields[1]) for fields in (line.split() for line in out.splitlines()) if fields]

    @contextmanager
    def on_system_libvirtd(self) -> Iterator[None]:
        """The agent restarted on ``qemu:///system`` with TCG guests; back on the test driver after.
        The earlier tests' manifests go first: real guests of theirs would take real graces to stop."""
        self.ok("rm -f /etc/qat-handler/vmis/*")
        self.wait("the earlier VMIs forgotten", "qat-handler status -o json | grep -qx '\\[\\]'")
        defaults = "/etc/default/qat-handler"
        to_system = "s|--connect test:///default|--connect qemu:///system|; s|--domain-type kvm|--domain-type qemu|"
        to_test = "s|--connect qemu:///system|--connect test:///default|; s|--domain-type qemu|--domain-type kvm|"
        self.ok(f"sed -i '{to_system}' {defaults} && systemctl restart qat-handler", timeout=120)
        try:
            yield
        finally:
            self.ok(f"sed -i '{to_test}' {defaults} && systemctl restart qat-handler", timeout=120)

    def write_manifest(self, name: str, text: str) -> None:
        """As an operator should: written beside the directory's files, then renamed into place."""
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as local:
            local.write(text)
            local.flush()
            _run("podman", "cp", local.name, f"{self.container}:/etc/qat-handler/{name}.tmp")
        self.ok(f"chmod 644 /etc/qat-handler/{name}.tmp && mv /etc/qat-handler/{name}.tmp /etc/qat-handler/vmis/{name}")


def _limits() -> list[str]:
    # As deploy/image/run.sh: podman may not raise a limit above this host's hard limits.
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    nofile = 1048576 if nofile == resource.RLIM_INFINITY else nofile
    nproc = pid_max if nproc == resource.RLIM_INFINITY or nproc > pid_max else nproc
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


@contextmanager
def booted(image: str) -> Iterator[SystemdHost]:
    """The host booted, with qat-handler.service active (READY=1 received); removed afterwards."""
    container = f"qat-handler-systemd-{uuid.uuid4().hex[:8]}"
    _run(
        "podman", "run", "-d", "--name", container, "--runtime", "runc", "--network=none", "--privileged",
        "--systemd=always", *_limits(), image,
    )  # fmt: skip
    try:
        host = SystemdHost(container)
        host.wait("qat-handler.service active", "systemctl is-active qat-handler", timeout=90)
        yield host
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", container], capture_output=True)
