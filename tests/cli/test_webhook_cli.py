"""``qat-handler webhook`` and ``qat-handler crd`` as a user types them: one-line errors, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from handler.cli.crd_cmd import CRD_FILE
from handler.core.crd_schema import vmi_crd

REPO = Path(__file__).resolve().parents[2]


def qat_handler(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handler", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--listen", "nowhere"], "--listen 'nowhere' is not HOST:PORT"),
        (["--listen", ":8443", "--tls-cert-file", "x.crt"], "--tls-cert-file and --tls-private-key-file go together"),
        (["--listen", ":8443", "--stack-service-account", "nocolon"], "is not NAMESPACE:NAME"),
        (["--listen", ":8443", "--permitted-devices", "/nonexistent.yaml"], "/nonexistent.yaml cannot be read"),
    ],
)
def test_bad_flags_are_one_line_with_the_fix(argv: list[str], message: str) -> None:
    result = qat_handler("webhook", *argv)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert message in result.stderr


def test_no_credentials_is_one_line(tmp_path: Path) -> None:
    result = qat_handler("webhook", "--listen", "127.0.0.1:0", env={"KUBECONFIG": str(tmp_path / "none")})
    assert result.returncode == 2
    assert "no Kubernetes credentials" in result.stderr and "fix: " in result.stderr
    assert "Traceback" not in result.stderr


def test_unusable_certificate_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "c").write_text("not a certificate")
    (tmp_path / "k").write_text("not a key")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "x",
                "clusters": [{"name": "x", "cluster": {"server": "http://127.0.0.1:1"}}],
                "users": [{"name": "x", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],
            }
        )
    )
    result = qat_handler(
        "webhook",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert-file",
        str(tmp_path / "c"),
        "--tls-private-key-file",
        str(tmp_path / "k"),
        env={"KUBECONFIG": str(kubeconfig)},
    )
    assert result.returncode == 2
    assert "no usable certificate and key; fix:" in result.stderr and "Traceback" not in result.stderr


def test_crd_prints_the_generated_crd_and_writes_the_file(tmp_path: Path) -> None:
    printed = qat_handler("crd")
    assert printed.returncode == 0
    assert yaml.safe_load(printed.stdout) == vmi_crd()
    target = tmp_path / "deploy" / "crds" / "vmi.yaml"
    assert qat_handler("crd", "--output", str(target)).returncode == 0
    assert target.read_text() == printed.stdout == (REPO / CRD_FILE).read_text()
