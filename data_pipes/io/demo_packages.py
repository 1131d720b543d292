"""Demo corpus parts built from the installed distributions: metadata pages and licence files.

Distributions are those installed in the interpreter's own site-packages folders (sysconfig's ``purelib`` and
``platlib``), one per normalised name (the first found, as ``import`` would), sorted by name. The current
``sys.path`` is not used: it depends on how the process started (a deployment's worker has the checkout and its
``*.egg-info`` on it, the CLI does not), and the corpus must not. ``package_metadata``: each distribution's long description
wrapped into a web page (``demo_html``), url ``pypi://<name>/<version>``. ``licenses``: every licence file in
a distribution's metadata folder (its ``License-File`` entries, under ``licenses/`` for metadata 2.4, plus any
``LICENSE*``, ``LICENCE*``, ``COPYING*`` or ``NOTICE*`` file there), one text document each. Licence files
that a package keeps only inside its import package are not looked for: that would mean reading every RECORD,
too slow for a listing.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import sysconfig
from pathlib import Path
from typing import NamedTuple

from data_pipes.io.demo_html import description_page
from data_pipes.io.demo_items import DemoItem, demo_good, demo_quarantined, file_document

LICENSE_PREFIXES = ("LICENSE", "LICENCE", "COPYING", "NOTICE")
_CONTINUATION = re.compile(r"^( {8}| {7}\|)", re.MULTILINE)


def canonical_name(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


class Installed(NamedTuple):
    """An installed distribution as the listing sees it."""

    name: str  # canonical
    version: str
    folder: str  # its metadata folder ("" when its finder has none on disk)
    license_files: tuple[str, ...]  # the License-File entries of its metadata


def site_folders() -> list[str]:
    """The interpreter's site-packages folders (where its distributions are installed), in import order."""
    paths = sysconfig.get_paths()
    out: list[str] = []
    for key in ("purelib", "platlib"):
        folder = paths.get(key)
        if folder and folder not in out:
            out.append(folder)
    return out


def installed_distributions() -> list[Installed]:
    """One entry per distribution of the site-packages folders (the first of each name), sorted."""
    seen: dict[str, Installed] = {}
    for dist in md.distributions(path=site_folders()):
        meta = dist.metadata
        name = meta["Name"] if meta is not None else None
        if not name or canonical_name(name) in seen:
            continue
        folder = getattr(dist, "_path", None)  # PathDistribution's metadata folder; other finders have none
        folder_str = str(folder) if folder is not None and os.path.isdir(str(folder)) else ""
        licenses = tuple(meta.get_all("License-File") or ())
        seen[canonical_name(name)] = Installed(canonical_name(name), dist.version or "", folder_str, licenses)
    return sorted(seen.values())


def metadata_folders() -> list[str]:
    """The names of every ``*.dist-info`` / ``*.egg-info`` entry of the site-packages folders, in order (no
    folder paths: they differ between checkouts): they carry each distribution's name and version, so this
    changes whenever a package is installed, removed or upgraded, and listing folders is far cheaper than
    parsing every distribution's metadata."""
    out = []
    for entry in site_folders():
        try:
            names = sorted(os.listdir(entry))
        except OSError:
            continue
        out.extend(n for n in names if n.endswith((".dist-info", ".egg-info")))
    return out


def list_package_metadata() -> list[DemoItem]:
    """One item per installed distribution."""
    return [DemoItem("package_metadata", d.name, d.folder, d.version) for d in installed_distributions()]


def _description(meta: md.PackageMetadata) -> str:
    body = meta.get_payload() if hasattr(meta, "get_payload") else None  # type: ignore[attr-defined]
    if body and body.strip():
        return body
    header = meta.get("Description") or ""
    return _CONTINUATION.sub("", header)  # metadata 1.x folds the description into an indented header


def render_package_metadata(item: DemoItem) -> dict[str, str]:
    """The distribution's description as an HTML page."""
    url = f"pypi://{item.key}/{item.version}"
    try:
        dist = md.PathDistribution(Path(item.path)) if item.path else md.distribution(item.key)
        meta = dist.metadata
        if meta is None or not meta.get("Name"):
            raise md.PackageNotFoundError(item.key)
    except (md.PackageNotFoundError, OSError):
        return demo_quarantined(item, url, "package_not_found", f"{item.key} is no longer installed")
    content_type = meta.get("Description-Content-Type") or ""
    links = [tuple(s.strip() for s in entry.split(",", 1)) for entry in meta.get_all("Project-URL") or []]
    if meta.get("Home-page"):
        links.insert(0, ("Homepage", meta["Home-page"]))
    page = description_page(
        meta.get("Name") or item.key,
        item.version,
        meta.get("Summary") or "",
        _description(meta),
        content_type,
        [link for link in links if len(link) == 2],  # type: ignore[misc]
    )
    doc_meta = {"format": "html", "name": item.key, "version": item.version, "content_type": content_type}
    return demo_good(item, page, url, {**doc_meta, "path": os.path.basename(item.path)})


def _license_files(folder: str, declared: tuple[str, ...]) -> list[str]:
    """Licence files inside a metadata folder, as paths relative to it."""
    found = set()
    for name in declared:
        for rel in (f"licenses/{name}", name):
            if os.path.isfile(os.path.join(folder, rel)):
                found.add(rel)
                break
    for name in os.listdir(folder):
        if name.upper().startswith(LICENSE_PREFIXES) and os.path.isfile(os.path.join(folder, name)):
            found.add(name)
    licenses_dir = os.path.join(folder, "licenses")
    for root, _dirs, files in os.walk(licenses_dir):
        for name in files:
            found.add(os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/"))
    return sorted(found)


def list_licenses() -> list[DemoItem]:
    """One item per licence file; key is ``"<name>/<path in the metadata folder>"``."""
    items = []
    for dist in installed_distributions():
        if not dist.folder:
            continue
        for rel in _license_files(dist.folder, dist.license_files):
            path = os.path.join(dist.folder, rel)
            items.append(DemoItem("licenses", f"{dist.name}/{rel}", path, dist.version))
    return sorted(items)


def render_license(item: DemoItem) -> dict[str, str]:
    """The licence file as a text document."""
    name, rel = item.key.split("/", 1)
    meta = {"format": "text", "name": name, "version": item.version, "path": rel}
    return file_document(item, f"pypi://{name}/{item.version}/{rel}", meta)
