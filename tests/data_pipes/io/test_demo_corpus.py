"""Tests for data_pipes.io.demo_corpus on this interpreter's own standard library and distributions."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from data_pipes.io import demo_packages
from data_pipes.io.demo_corpus import DEMO_PARTS, DemoItem, demo_signature, list_demo_items, render_demo_item
from data_pipes.io.demo_html import description_html
from data_pipes.io.demo_stdlib import mask_process_state, stdlib_dir

GOOD_KEYS = {"id", "text", "source", "url", "lang", "meta"}
BAD_KEYS = {"id", "source", "url", "error"}

FAKE_METADATA = """\
Metadata-Version: 2.4
Name: Arcflow_Fake-Demo.Dist
Version: 1.2.3
Summary: A fake distribution made by a test
Project-URL: Source, https://example.org/src
License-File: LICENSE.md
Description-Content-Type: text/markdown

# Fake demo dist

Some **bold** words and `code` with a [link](https://example.org/docs).

```python
print("hello")
```

- first item
- second item
"""


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A dist-info folder on sys.path with a licence in licenses/ and a COPYING file at the top."""
    folder = tmp_path / "arcflow_fake_demo_dist-1.2.3.dist-info"
    (folder / "licenses").mkdir(parents=True)
    (folder / "METADATA").write_text(FAKE_METADATA, encoding="utf-8")
    (folder / "licenses" / "LICENSE.md").write_text("MIT License\n\nCopyright (c) 2026 Nobody\n")
    (folder / "COPYING").write_bytes("Copyright © 2026 Personne\n".encode("cp1252"))
    _install_into(tmp_path, monkeypatch)
    return folder


def _install_into(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``folder`` one of the interpreter's site-packages folders, as an installed distribution would be."""
    original = demo_packages.site_folders()
    monkeypatch.setattr(demo_packages, "site_folders", lambda: [str(folder), *original])
    importlib.invalidate_caches()


def _check_shape(record: dict) -> None:
    if "error" in record:
        assert set(record) == BAD_KEYS and record["error"].split(":", 1)[0].islower()
    else:
        assert set(record) == GOOD_KEYS and "format" in json.loads(record["meta"])
    assert len(record["id"]) == 16 and record["source"] in DEMO_PARTS


def test_listing_is_deterministic_sorted_and_capped() -> None:
    items = list_demo_items(DEMO_PARTS)
    assert items == list_demo_items(list(reversed(DEMO_PARTS)))
    assert {item.part for item in items} == set(DEMO_PARTS)
    for part in DEMO_PARTS:
        keys = [item.key for item in items if item.part == part]
        assert keys == sorted(keys) and len(keys) == len(set(keys))
    capped = list_demo_items(["licenses", "stdlib_code"], max_items_per_part=3)
    assert [item.part for item in capped] == ["stdlib_code"] * 3 + ["licenses"] * 3
    assert len({item.id for item in items}) == len(items)


def test_unknown_part_suggests_the_right_name() -> None:
    with pytest.raises(ValueError, match="did you mean 'licenses'"):
        list_demo_items(["licences"])
    with pytest.raises(TypeError):
        list_demo_items("stdlib_code")


def test_stdlib_code_lists_packages_as_repos_and_skips_tests() -> None:
    keys = {item.key for item in list_demo_items(["stdlib_code"])}
    assert {"json/decoder.py", "email/parser.py", "stdlib_modules/os.py"} <= keys
    for key in keys:
        parts = key.split("/")
        assert parts[0] not in {"test", "idlelib", "tkinter", "lib2to3", "site-packages"}
        assert not {"__pycache__", "test", "tests"} & set(parts[:-1])


def test_stdlib_code_renders_files_with_repo_meta() -> None:
    [item] = [i for i in list_demo_items(["stdlib_code"]) if i.key == "json/decoder.py"]
    record = render_demo_item(item)
    assert "class JSONDecoder" in record["text"]
    assert record["url"] == "stdlib://json/decoder.py" and record["source"] == "stdlib_code"
    meta = json.loads(record["meta"])
    assert meta == {"repo": "json", "path": "json/decoder.py", "language": "python", "format": "code"}
    module = render_demo_item(
        DemoItem("stdlib_code", "stdlib_modules/os.py", os.path.join(stdlib_dir(), "os.py"))
    )
    assert json.loads(module["meta"])["repo"] == "stdlib_modules" and module["url"] == "stdlib://os.py"
    assert render_demo_item(item) == record


def test_binary_files_in_the_stdlib_are_quarantined() -> None:
    wheels = [i for i in list_demo_items(["stdlib_code"]) if i.key.endswith(".whl")]
    if not wheels:
        pytest.skip("this Python ships no ensurepip wheels")
    record = render_demo_item(wheels[0])
    assert set(record) == BAD_KEYS and record["error"].startswith("binary_content:")


def test_pydoc_pages_and_import_failures() -> None:
    names = {item.key for item in list_demo_items(["pydoc_html"])}
    assert {"json", "textwrap"} <= names and not {"antigravity", "this", "sys", "tkinter"} & names
    record = render_demo_item(DemoItem("pydoc_html", "json"))
    assert record["url"] == "pydoc://json" and "JSONDecoder" in record["text"]
    assert record["text"].lstrip().lower().startswith("<!doctype html")
    assert json.loads(record["meta"])["format"] == "html"
    broken = render_demo_item(DemoItem("pydoc_html", "no_such_module_for_arcflow"))
    assert set(broken) == BAD_KEYS and broken["error"].startswith("import_error: ModuleNotFoundError")


def test_process_state_is_masked() -> None:
    page = "f(x=&lt;object&nbsp;at&nbsp;0x7f12deadbeef&gt;) environ({'TOKEN': 'secret'}) handle 7f928d6822e0"
    masked = mask_process_state(page)
    assert "secret" not in masked and "deadbeef" not in masked and "7f928d6822e0" not in masked
    assert "environ({...})" in masked


def test_pydoc_rendering_is_the_same_in_another_process() -> None:
    """The issue's case: a process whose warnings, logging, time zone, hash seed and sys.path differ (a Dask
    worker, a deployment's worker) renders the same bytes, in a batch or one page at a time."""
    modules = ["difflib", "os", "logging", "warnings", "time", "tempfile", "string"]
    script = textwrap.dedent(
        """
        import json, logging, sys, tempfile, warnings
        logging.basicConfig(level=logging.DEBUG)
        tempfile.gettempdir()
        for _ in range(50):
            warnings.simplefilter("always")  # bumps the warnings registry's version counter
        sys.path.insert(0, "/nonexistent-checkout")
        from data_pipes.io.demo_corpus import DemoItem, render_demo_items
        print(json.dumps(render_demo_items([DemoItem("pydoc_html", m) for m in sys.argv[1:]])))
        """
    )
    env = {
        **os.environ,
        "PYTHONHASHSEED": "12345",
        "TZ": "Asia/Kathmandu",
        "ARCFLOW_TEST_SECRET": "do-not-leak-me",
    }
    out = subprocess.run(
        [sys.executable, "-W", "always", "-c", script, *modules],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    here = [render_demo_item(DemoItem("pydoc_html", m)) for m in modules]
    assert json.loads(out) == here
    assert all("error" not in r for r in here)
    assert "do-not-leak-me" not in out and "__warningregistry__" not in out and "Kathmandu" not in out
    assert sys.prefix not in out and sys.base_prefix not in out  # installation folders are masked
    assert json.loads(here[1]["meta"])["path"] == "os.py"


def test_no_record_holds_a_path_of_this_machine(fake_dist: Path) -> None:
    items = [i for i in list_demo_items(DEMO_PARTS, max_items_per_part=4)]
    items += [i for i in list_demo_items(["package_metadata", "licenses"]) if "arcflow-fake" in i.key]
    text = json.dumps([render_demo_item(item) for item in items])
    for folder in {sys.prefix, sys.base_prefix, stdlib_dir(), str(fake_dist.parent)}:
        assert folder not in text


def test_package_metadata_page_and_licenses_from_a_fake_dist(fake_dist: Path) -> None:
    [item] = [i for i in list_demo_items(["package_metadata"]) if i.key == "arcflow-fake-demo-dist"]
    assert (item.version, item.path) == ("1.2.3", str(fake_dist))
    record = render_demo_item(item)
    assert record["url"] == "pypi://arcflow-fake-demo-dist/1.2.3"
    page = record["text"]
    assert (
        "<title>Arcflow_Fake-Demo.Dist 1.2.3</title>" in page and '<a href="https://example.org/src">' in page
    )
    assert "<h2>Fake demo dist</h2>" in page and "<strong>bold</strong>" in page
    assert '<pre><code>print("hello")</code></pre>' in page and "<li>second item</li>" in page
    assert json.loads(record["meta"])["content_type"] == "text/markdown"

    licenses = {
        i.key: i for i in list_demo_items(["licenses"]) if i.key.startswith("arcflow-fake-demo-dist/")
    }
    assert sorted(licenses) == [
        "arcflow-fake-demo-dist/COPYING",
        "arcflow-fake-demo-dist/licenses/LICENSE.md",
    ]
    copying = render_demo_item(licenses["arcflow-fake-demo-dist/COPYING"])
    assert copying["text"] == "Copyright © 2026 Personne\n"
    assert copying["url"] == "pypi://arcflow-fake-demo-dist/1.2.3/COPYING"


def test_signature_tracks_parts_and_installed_distributions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = demo_signature(["licenses"])
    code_only = demo_signature(["stdlib_code"])
    assert before == demo_signature(["licenses"]) and len(before) == 64 and before != code_only
    # a checkout on sys.path (a deployment's worker: `<checkout>` holding `arcflow.egg-info`) changes nothing
    checkout = tmp_path / "checkout"
    (checkout / "arcflow.egg-info").mkdir(parents=True)
    (checkout / "arcflow.egg-info" / "PKG-INFO").write_text(
        "Metadata-Version: 2.1\nName: arcflow\nVersion: 9\n"
    )
    monkeypatch.syspath_prepend(str(checkout))
    importlib.invalidate_caches()
    assert demo_signature(["licenses"]) == before
    assert not any(str(checkout) in i.path for i in list_demo_items(["package_metadata", "licenses"]))
    # installing a distribution does
    site = tmp_path / "site"
    folder = site / "another_fake-0.1.dist-info"
    folder.mkdir(parents=True)
    (folder / "METADATA").write_text("Metadata-Version: 2.1\nName: another-fake\nVersion: 0.1\n")
    _install_into(site, monkeypatch)
    assert demo_signature(["licenses"]) != before
    assert demo_signature(["stdlib_code"]) == code_only


def test_every_part_renders_contract_shaped_records() -> None:
    for item in list_demo_items(DEMO_PARTS, max_items_per_part=3):
        _check_shape(render_demo_item(item))


def test_description_html_handles_rst_and_plain_text() -> None:
    rst = "Title\n=====\n\nA paragraph\nover two lines.\n\n    indented code\n"
    out = description_html(rst, "text/x-rst")
    assert out == "<h2>Title</h2>\n<p>A paragraph over two lines.</p>\n<pre>    indented code</pre>"
    assert description_html("a < b & c", "") == "<p>a &lt; b &amp; c</p>"
