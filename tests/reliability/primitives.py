"""The small strategies the input generators are built from: ugly text, names, host paths,
quantities and PCI addresses, and the helpers that leave an optional key out."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from handler.core.bdf import Bdf

GENERIC = "qat.intel.com/generic"
RESOURCES = (GENERIC, "qat.intel.com/cy", "qat.intel.com/dc", "intel.com/qat-vf")
XML_METACHARACTERS = "<>&'\"]]>\n\r\t;$`\\ =,/"
NASTY_STRINGS = (
    "",
    " ",
    "<",
    "&amp;",
    "]]>",
    "\"'",
    "a\nb",
    "\r\n",
    "\x00",
    "\x1b[31m",
    "\u2028",
    "\ufeff",
    "\ud7ff",
    "\U0001f600",
    "../../etc/passwd",
    "/..",
    "/",
    "${HOME}",
    "%s%n",
    "x" * 5000,
)
HUGE_NUMBERS = (-1, 0, 2**31, 2**63, 2**64 + 1, 10**40, -(10**40), 1.5, float("inf"), float("nan"), "16Ei", "9" * 25)

ugly_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(XML_METACHARACTERS + "aé中\U0001f600"), max_size=20),
    st.sampled_from(NASTY_STRINGS),
)
dns_label = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,12}[a-z0-9])?\Z")
dns_name = st.from_regex(r"\A[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?\Z")
entry_name = st.from_regex(r"\A[a-zA-Z0-9][-_a-zA-Z0-9]{0,10}\Z")
printable_ugly = st.one_of(
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=30),
    st.text(alphabet=st.sampled_from(XML_METACHARACTERS.strip("\n\r\t") + "aé中\U0001f600"), max_size=20),
)
printable_path = st.builds(lambda parts: "/" + "/".join(parts), st.lists(printable_ugly, min_size=1, max_size=3))
host_path = st.one_of(
    printable_path,
    printable_path,
    printable_path,
    st.builds(lambda parts: "/" + "/".join(parts), st.lists(ugly_text, min_size=1, max_size=3)),
    st.sampled_from(("/var/lib/images/disk.img", "/boot/vmlinuz", "/a b/c'd\"e<&>.img", "/")),
)
quantity = st.one_of(
    st.sampled_from(("1Mi", "256Mi", "1Gi", "1.5Gi", "1048576", "512M", "16Ti")),
    st.integers(min_value=2**20, max_value=2**40),
)
bdf = st.builds(Bdf, st.just(0), st.integers(0, 255), st.integers(0, 31), st.integers(0, 7))


def maybe(draw: st.DrawFn, value: Any) -> Any:
    """``value``, or the marker that leaves the key out."""
    return value if draw(st.booleans()) else ABSENT


ABSENT = object()


def put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not ABSENT:
        target[key] = value
