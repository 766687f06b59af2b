"""The command line: render, status, --help of every subcommand, --version and the demo.

Most cases call ``handler.cli.main.main`` in-process (fast, stderr captured); the ones
that are about the installed entry points run ``python -m handler`` as a subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from lxml import etree

from handler import __version__
from handler.baremetal.status_store import StatusStore
from handler.cli.main import build_parser, main
from handler.core.bdf import Bdf
from handler.core.device_env import AssignedDevice
from handler.core.status import Phase, VMIStatus, ready, synchronized
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "vmis"


def subcommands() -> list[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return sorted(actions[0].choices)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def python_m_handler(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handler", *argv], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


VMI = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: cli-vm, namespace: cli, uid: 6a1f0c9e-0001-4d6b-9e51-0000000000c1}
spec:
  domain:
    memory: {guest: 256Mi}
    devices:
      qats: [{name: qat0, deviceName: qat.intel.com/generic}]
"""


# -- render ------------------------------------------------------------------------------


@pytest.mark.parametrize("example", ["vmi-qat.yaml", "vmi-ipsec-gw.yaml", "vmi-storage.json"])
def test_render_prints_the_domain_for_each_example(capsys: pytest.CaptureFixture[str], example: str) -> None:
    code, out, err = run_cli(capsys, "render", str(EXAMPLES / example))
    assert (code, err) == (0, "")
    root = etree.fromstring(out.encode())
    assert root.tag == "domain" and root.get("type") == "kvm"
    assert root.findall("devices/hostdev"), "every example asks for QAT VFs"
    assert all(h.get("managed") == "no" for h in root.iterfind("devices/hostdev"))


def test_render_flags_shape_the_domain(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run_cli(
        capsys,
        "render",
        str(EXAMPLES / "vmi-qat.yaml"),
        "--domain-type",
        "qemu",
        "--managed-hostdevs",
        "--cpu-mode",
        "host-passthrough",
        "--state-dir",
        str(tmp_path),
    )
    assert code == 0
    root = etree.fromstring(out.encode())
    assert root.get("type") == "qemu"
    assert root.find("devices/hostdev").get("managed") == "yes"  # type: ignore[union-attr]
    assert root.find("cpu").get("mode") == "host-passthrough"  # type: ignore[union-attr]
    serial = root.find("devices/serial/log").get("file")  # type: ignore[union-attr]
    assert serial == f"{tmp_path}/logs/default_vmi-qat.serial.log"


def test_render_as_installed_entry_point() -> None:
    result = python_m_handler("render", str(EXAMPLES / "vmi-qat.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('<domain type="kvm">')
    assert '<alias name="ua-qat-qat1"/>' in result.stdout


def test_render_checks_the_host_when_asked(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    host = tmp_path / "host"
    build_simulated_host(
        host, SimulatedHost(pfs=(SimulatedPf("C62x", Bdf(0, 0x3D, 0, 0), 2, vf_drivers=((1, "c6xxvf"),)),))
    )
    vmi = write(tmp_path / "vm.yaml", VMI)
    write(tmp_path / "vm.env", "QAT0=0000:3d:01.0\n")
    code, out, err = run_cli(capsys, "render", str(vmi), "--host-root", str(host))
    assert (code, err) == (0, "")
    assert "<hostdev" in out
    write(tmp_path / "vm.env", "QAT0=0000:3d:01.1\n")
    code, out, err = run_cli(capsys, "render", str(vmi), "--host-root", str(host))
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and err.startswith("qat-handler: vm.yaml: 0000:3d:01.1 ")


BAD_INPUTS = [
    pytest.param(
        VMI.replace("memory: {guest: 256Mi}", "memory: {guest: 256Mi}\n    clock: {}"),
        None,
        "spec.domain.clock",
        id="unknown-field",
    ),
    pytest.param(VMI.replace("256Mi", "256MB"), None, "spec.domain.memory.guest", id="bad-quantity"),
    pytest.param(VMI, "QAT0=zz:01.1\n", "QAT0 'zz:01.1' is not a PCI address", id="bad-bdf"),
    pytest.param(VMI, "QAT0=0000:3d:01.1\nQAT1=0000:3d:01.2\n", "QAT0..QATn holds 2 address(es)", id="too-many"),
    pytest.param(VMI, "", "PCI_RESOURCE_QAT_INTEL_COM_GENERIC is not set", id="no-devices-in-env"),
    pytest.param(VMI, "QAT0 0000:3d:01.1\n", "vm.env line 1", id="bad-env-line"),
    pytest.param("spec: [unclosed\n", None, "vm.yaml is not valid YAML/JSON", id="yaml-syntax"),
    pytest.param("---\na: 1\n---\nb: 2\n", None, "vm.yaml holds 2 documents", id="two-documents"),
]


@pytest.mark.parametrize(("manifest", "env", "names"), BAD_INPUTS)
def test_render_bad_input_is_one_line_on_stderr(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, manifest: str, env: str | None, names: str
) -> None:
    vmi = write(tmp_path / "vm.yaml", manifest)
    if env is not None:
        write(tmp_path / "vm.env", env)
    code, out, err = run_cli(capsys, "render", str(vmi))
    assert code != 0
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("qat-handler: ") and names in err
    assert "Traceback" not in err


def test_render_missing_files_are_one_line_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "render", str(tmp_path / "absent.yaml"))
    assert code != 0 and err.count("\n") == 1 and "absent.yaml" in err
    vmi = write(tmp_path / "vm.yaml", VMI)
    code, _, err = run_cli(capsys, "render", str(vmi), "--env-file", str(tmp_path / "nope.env"))
    assert code != 0 and err.count("\n") == 1 and "nope.env" in err


def test_render_bad_input_as_a_subprocess_has_no_traceback(tmp_path: Path) -> None:
    vmi = write(tmp_path / "vm.yaml", VMI)
    write(tmp_path / "vm.env", "QAT0=0000:3d:01.8\n")
    result = python_m_handler("render", str(vmi))
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "qat-handler: vm.yaml: QAT0 '0000:3d:01.8' is not a PCI address; "
        "fix: use the form 0000:3d:01.1 (domain:bus:slot.function, hex)"
    ]


# -- help, defaults, version -------------------------------------------------------------


def test_every_documented_command_exists() -> None:
    assert {
        "agent",
        "launcher",
        "controller",
        "webhook",
        "crd",
        "render",
        "status",
        "console",
        "doctor",
        "demo",
    } <= set(subcommands())
    readme = (REPO / "README.md").read_text()
    named = set(re.findall(r"`qat-handler ([a-z]+)", readme))
    assert named and named <= set(subcommands()), named - set(subcommands())


@pytest.mark.parametrize("command", subcommands())
def test_help_of_each_subcommand_explains_with_examples(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: qat-handler {command}")
    assert "examples:" in out


@pytest.mark.parametrize("command", subcommands())
def test_flag_defaults_are_real_values(command: str, tmp_path: Path) -> None:
    """Defaults read off a slots dataclass class would be slot descriptors, not paths."""
    argv = [command, str(tmp_path / "x.yaml")] if command == "render" else [command]
    argv += ["--listen", "127.0.0.1:8443"] if command == "webhook" else []
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.skip(f"{command} needs more arguments than a file")
    for name, value in vars(args).items():
        assert not isinstance(value, types.MemberDescriptorType), f"{command} --{name} defaults to {value!r}"


def test_top_level_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("agent", "render", "status", "demo"))


def test_no_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code != 0
    assert "Traceback" not in capsys.readouterr().err


def test_python_m_handler_version() -> None:
    result = python_m_handler("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"qat-handler {__version__}"


# -- status ------------------------------------------------------------------------------


def test_status_json_of_an_empty_state_dir(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run_cli(capsys, "status", "--state-dir", str(tmp_path), "-o", "json")
    assert code == 0 and json.loads(out) == []


def test_status_of_a_missing_state_dir_is_empty_with_one_line_naming_the_flag(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Empty, not an error: scripts poll status while the agent starts and makes the directory.
    code, out, err = run_cli(capsys, "status", "--state-dir", str(tmp_path / "typo"), "-o", "json")
    assert (code, json.loads(out)) == (0, [])
    assert err == f"qat-handler: --state-dir {tmp_path / 'typo'} does not exist (yet); is it the agent's?\n"


def test_status_of_a_damaged_status_file_is_one_line_naming_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "status.json").write_text('{"vmis": {"ns/vm": ')
    code, out, err = run_cli(capsys, "status", "--state-dir", str(tmp_path))
    assert (code, out) == (2, "")
    assert err.startswith(f"qat-handler: {tmp_path / 'status.json'}: not JSON; fix: ") and err.count("\n") == 1


def test_status_table_and_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    store = StatusStore(tmp_path)
    device = AssignedDevice("qat0", "qat.intel.com/generic", Bdf(0, 0x3D, 1, 1), "QAT0..QATn")
    store.write("ns/vm", VMIStatus(Phase.RUNNING, "ns_vm", (ready(True), synchronized(True)), (device,)))
    blocked = synchronized(False, "DeviceEnvInvalid", "QAT0 'zz' is not a PCI address; fix: x")
    store.write("ns/bad", VMIStatus(Phase.SCHEDULED, "ns_bad", (ready(False), blocked)))
    store.close()

    code, out, _ = run_cli(capsys, "status", "--state-dir", str(tmp_path), "-o", "json")
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["vm"]["phase"] == "Running" and rows["vm"]["devices"] == ["0000:3d:01.1"]
    assert rows["vm"]["namespace"] == "ns" and rows["vm"]["domain"] == "ns_vm"
    assert rows["bad"]["phase"] == "Scheduled" and rows["bad"]["message"].startswith("QAT0 'zz'")

    code, out, _ = run_cli(capsys, "status", "--state-dir", str(tmp_path))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "PHASE", "DOMAIN", "DEVICES", "AGE"]
    assert lines[1].split()[:5] == ["ns", "bad", "Scheduled", "ns_bad", "<none>"]
    assert lines[2].split()[:5] == ["ns", "vm", "Running", "ns_vm", "0000:3d:01.1"]

    code, out, _ = run_cli(capsys, "status", "--state-dir", str(tmp_path), "-o", "wide")
    assert code == 0 and "MESSAGE" in out.splitlines()[0] and "is not a PCI address" in out


# -- doctor ------------------------------------------------------------------------------


def doctor_host(tmp_path: Path) -> Path:
    """A C62x host with two VFs, the second on its in-kernel driver (so one check fails)."""
    host = tmp_path / "host"
    build_simulated_host(
        host, SimulatedHost(pfs=(SimulatedPf("C62x", Bdf(0, 0x3D, 0, 0), 2, vf_drivers=((1, "c6xxvf"),)),))
    )
    return host


def installed_cli() -> str:
    return str(Path(sys.executable).with_name("qat-handler"))


def test_doctor_json_is_one_json_document(tmp_path: Path) -> None:
    """The README's `qat-handler doctor --domain-type qemu -o json`, on a generated host."""
    argv = ["doctor", "--domain-type", "qemu", "-o", "json", "--host-root", str(doctor_host(tmp_path))]
    result = subprocess.run(
        [installed_cli(), *argv, "--connect", "test:///default"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode in (0, 1), result.stderr
    body = json.loads(result.stdout)
    assert isinstance(body, dict), "a JSON object, not a string holding JSON"
    assert body["ok"] is (result.returncode == 0)
    failed = {check["name"] for check in body["checks"] if not check["ok"]}
    assert "VF 0000:3d:01.1" in failed and "VF 0000:3d:01.0" not in failed


def test_doctor_help_jq_example_works(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The `| jq ...` line of `doctor --help`, run as a shell pipeline against a generated host."""
    with pytest.raises(SystemExit):
        main(["doctor", "--help"])
    example = next(line for line in capsys.readouterr().out.splitlines() if "| jq" in line)
    pipeline = example.split("#")[0].strip().replace("qat-handler", installed_cli(), 1)
    pipeline = pipeline.replace(
        " -o json", f" --domain-type qemu --host-root {doctor_host(tmp_path)} --connect test:///default -o json"
    )
    result = subprocess.run(["sh", "-c", pipeline], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    decoder, text, picked = json.JSONDecoder(), result.stdout.strip(), []
    while text:
        check, end = decoder.raw_decode(text)
        picked.append(check)
        text = text[end:].strip()
    assert picked and all(check["ok"] is False for check in picked)
    assert "VF 0000:3d:01.1" in {check["name"] for check in picked}


# -- demo --------------------------------------------------------------------------------


def test_demo_runs_the_examples_to_running_and_exits_zero(tmp_path: Path) -> None:
    env = {**os.environ, "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "handler", "demo", "--work-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines()]
    running = {row[1] for row in rows if len(row) >= 5 and row[2] == "Running"}
    assert running == {"vmi-qat", "ipsec-gw", "storage-dc"}, result.stdout
    assert "<hostdev" in result.stdout
    assert "demo done" in result.stdout
