"""The shell finds and reads the domain skeletons; the core only copies the parsed trees it is given."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from handler.core.domain_xml import render_domain
from handler.core.render_settings import RenderSettings
from handler.core.templates import SKELETONS, DomainTemplates
from handler.core.vmi_parse import parse_vmi
from handler.host.domain_templates import ENV_OVERRIDE, INSTALLED, load_templates

REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "vmis"
MANIFEST = {
    "apiVersion": "kubevirt.io/v1",
    "kind": "VirtualMachineInstance",
    "metadata": {"name": "skeleton", "namespace": "default", "uid": "7d3c8e52-3c1e-4b8e-9a57-1b2f0a5d6e01"},
    "spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "64Mi"}}}},
}


def test_every_skeleton_is_read_from_the_checkout() -> None:
    loaded = load_templates()
    assert [name for name, _ in loaded.texts] == sorted(SKELETONS)
    assert dict(loaded.texts)["domain.xml"] == (REPO_TEMPLATES / "domain.xml").read_text()


def test_the_override_directory_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(REPO_TEMPLATES, tmp_path, dirs_exist_ok=True)
    skeleton = (tmp_path / "domain.xml").read_text().replace('<clock offset="utc"/>', '<clock offset="localtime"/>')
    (tmp_path / "domain.xml").write_text(skeleton)
    monkeypatch.setenv(ENV_OVERRIDE, str(tmp_path))
    xml = render_domain(parse_vmi(MANIFEST), (), RenderSettings(templates=load_templates()))
    assert '<clock offset="localtime"/>' in xml


def test_render_command_uses_the_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As a user types it: QAT_HANDLER_TEMPLATES=DIR qat-handler render VMI_FILE."""
    shutil.copytree(REPO_TEMPLATES, tmp_path / "templates")
    skeleton = tmp_path / "templates" / "domain.xml"
    skeleton.write_text(skeleton.read_text().replace("<on_crash>destroy</on_crash>", "<on_crash>preserve</on_crash>"))
    done = subprocess.run(
        [sys.executable, "-m", "handler", "render", str(EXAMPLES / "vmi-qat.yaml")],
        env={**os.environ, ENV_OVERRIDE: str(tmp_path / "templates")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "<on_crash>preserve</on_crash>" in done.stdout, done.stdout


def test_a_missing_directory_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_OVERRIDE, str(tmp_path / "nowhere"))
    monkeypatch.setattr("handler.host.domain_templates.Path.is_file", lambda self: False)
    with pytest.raises(FileNotFoundError, match=ENV_OVERRIDE):
        load_templates()


def test_each_copy_is_the_callers_own() -> None:
    templates = DomainTemplates.of({"rng.xml": "<rng model='virtio'><!-- why --><backend/></rng>"})
    first = templates.template("rng.xml")
    first.set("model", "changed")
    assert templates.template("rng.xml").get("model") == "virtio"
    assert len(templates.template("rng.xml")) == 1  # the comment is dropped, as when rendering
    assert templates == DomainTemplates.of({"rng.xml": "<rng model='virtio'><!-- why --><backend/></rng>"})


def test_parts_are_the_elements_of_the_callers_copy_at_every_call() -> None:
    templates = DomainTemplates.of({"d.xml": "<d><a/><!-- gone --><b><c/><e/></b></d>"})
    root, (c, e) = templates.parts("d.xml", ("b/c", "b/e"))
    assert (c.tag, e.tag) == ("c", "e") and c.getroottree().getroot() is root
    c.addprevious(root.makeelement("x"))  # the caller's changes never move a later copy's parts
    c.set("filled", "yes")
    again, (c2, e2) = templates.parts("d.xml", ("b/c", "b/e"))
    assert (c2.tag, e2.tag) == ("c", "e") and c2.get("filled") is None and again is not root


def test_a_part_the_skeleton_lacks_is_named() -> None:
    templates = DomainTemplates.of({"d.xml": "<d><a/></d>"})
    with pytest.raises(LookupError, match=r"domain template d\.xml is missing <a/b>"):
        templates.parts("d.xml", ("a", "a/b"))


def test_rendering_without_templates_says_how_to_give_them() -> None:
    with pytest.raises(LookupError, match=r"domain template domain\.xml was not loaded; fix: pass load_templates"):
        render_domain(parse_vmi(MANIFEST), (), RenderSettings())


def test_an_installed_copy_has_every_skeleton_where_the_loader_looks() -> None:
    """setup.cfg's data_files, as setuptools reads them, install every skeleton into a directory the
    loader searches (setuptools may rewrite the key, so this reads it through setuptools itself)."""
    from setuptools.config.setupcfg import read_configuration

    (target, files), *others = read_configuration(REPO_TEMPLATES.parent / "setup.cfg")["options"]["data_files"]
    assert not others
    assert target in INSTALLED
    assert sorted(files) == sorted(f"templates/{name}" for name in SKELETONS)
