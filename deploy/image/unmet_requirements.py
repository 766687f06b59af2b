"""Print, one per line, the requirements that the Python running this script does not meet yet.

Run inside the image root by deploy/image/build.sh, with pip's own wheel as the first
argument (for its vendored ``packaging``; the root has no pip installed) and a file of
requirement lines as the second. What Debian's packages already provide at a fitting
version is left out; the rest is fetched as wheels.
"""

import importlib.metadata
import sys

sys.path.insert(0, sys.argv[1])
from pip._vendor.packaging.requirements import Requirement


def unmet(line: str) -> bool:
    requirement = Requirement(line)
    if requirement.marker is not None and not requirement.marker.evaluate():
        return False
    try:
        installed = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return True
    return not requirement.specifier.contains(installed, prereleases=True)


with open(sys.argv[2], encoding="utf-8") as lines:
    for text in (raw.strip() for raw in lines):
        if text and unmet(text):
            print(text)
