"""The domain XML skeletons as values: parsed once from the texts the shell read, then copied per use."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field

from lxml import etree

SKELETONS = ("domain.xml", "hostdev.xml", "disk.xml", "interface.xml", "rng.xml", "guest-agent.xml")
"""The files of the ``templates/`` directory that rendering needs."""


@dataclass(frozen=True, slots=True)
class DomainTemplates:
    """Compared by their texts; the parsed trees are a cache the caller never sees."""

    texts: tuple[tuple[str, str], ...]
    """(file name, XML text) pairs, one per skeleton."""
    _roots: dict[str, etree._Element] = field(init=False, default_factory=dict, compare=False, repr=False)
    _routes: dict[tuple[str, str], tuple[int, ...]] = field(init=False, default_factory=dict, compare=False, repr=False)
    """(file, path) -> child indexes from the root: a path is searched once per skeleton, not per render."""

    def __post_init__(self) -> None:
        parser = etree.XMLParser(remove_blank_text=True, remove_comments=True, resolve_entities=False)
        for name, text in self.texts:
            self._roots[name] = etree.fromstring(text.encode(), parser)

    @classmethod
    def of(cls, texts: Mapping[str, str]) -> DomainTemplates:
        return cls(tuple(sorted(texts.items())))

    def template(self, name: str) -> etree._Element:
        """A fresh copy of ``templates/<name>`` that the caller may change freely."""
        root = self._roots.get(name)
        if root is None:
            raise LookupError(
                f"domain template {name} was not loaded; fix: pass load_templates() as RenderSettings.templates"
            )
        return copy.deepcopy(root)

    def parts(self, name: str, paths: tuple[str, ...]) -> tuple[etree._Element, list[etree._Element]]:
        """A fresh copy, and the element at each path in it, found before the caller changes anything."""
        root = self.template(name)
        found = []
        for path in paths:
            element = root
            for index in self._route(name, path):
                element = element[index]
            found.append(element)
        return root, found

    def _route(self, name: str, path: str) -> tuple[int, ...]:
        route = self._routes.get((name, path))
        if route is None:
            target = self._roots[name].find(path)
            if target is None:
                raise LookupError(f"domain template {name} is missing <{path}>")
            steps = []
            while (parent := target.getparent()) is not None:
                steps.append(parent.index(target))
                target = parent
            route = self._routes[(name, path)] = tuple(reversed(steps))
        return route


NO_TEMPLATES = DomainTemplates(())
"""What settings that never render carry."""
