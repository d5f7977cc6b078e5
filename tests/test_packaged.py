"""Assembling the GGUF from its PyPI part packages: order, size and checksum are enforced."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
from conftest import MODELS
from kbqa.llm.packaged import PACKAGED_MODELS, AssemblyError, PackagedModel, join_parts


def fake_model(tmp_path: Path, parts: list[bytes], sha: str | None = None) -> tuple:
    joined = b"".join(parts)
    model = PackagedModel(key="t", file_name="t.gguf", prefix="demo-part", parts=len(parts),
                          version="1.0", size=len(joined),
                          sha256=sha or hashlib.sha256(joined).hexdigest())
    wheels = []
    for number, data in enumerate(parts, start=1):
        wheel = tmp_path / model.wheel_name(number)
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(model.member(number), data)
        wheels.append(wheel)
    return model, wheels, joined


def test_parts_join_in_order(tmp_path: Path) -> None:
    model, wheels, joined = fake_model(tmp_path, [b"GGUF" + b"a" * 10, b"b" * 7, b"c" * 3])
    target = join_parts(model, wheels, tmp_path / "out" / "t.gguf")
    assert target.read_bytes() == joined


def test_checksum_mismatch_leaves_no_file(tmp_path: Path) -> None:
    model, wheels, _ = fake_model(tmp_path, [b"x" * 5, b"y" * 5], sha="0" * 64)
    with pytest.raises(AssemblyError, match="expected"):
        join_parts(model, wheels, tmp_path / "t.gguf")
    assert not list(tmp_path.glob("t.gguf*"))


@pytest.mark.parametrize("key", list(PACKAGED_MODELS))
def test_setup_assembled_the_packaged_models(key: str) -> None:
    model = PACKAGED_MODELS[key]
    path = MODELS / model.file_name
    assert path.is_file(), f"{path} missing: `make setup` assembles it"
    assert path.stat().st_size == model.size
    with path.open("rb") as handle:
        assert handle.read(4) == b"GGUF"


def test_the_pins_install_what_kbqa_was_tested_with() -> None:
    """A user's `pip install` gets the llama-cpp-python whose internals kbqa reads and the
    Makefile builds, and a Streamlit with the layout the chat uses."""
    import re
    from importlib.metadata import version

    import tomllib
    from conftest import ROOT

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = {re.split(r"[<>=!~ ]", d, maxsplit=1)[0]: d for d in project["project"]["dependencies"]}
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    built = re.search(r"^LLAMA_VERSION := (\S+)", makefile, re.M)
    assert built and pins["llama-cpp-python"] == f"llama-cpp-python=={built[1]}"
    assert version("llama_cpp_python") == built[1]
    floor = re.search(r"streamlit>=([\d.]+)", pins["streamlit"])
    assert floor and "<" in pins["streamlit"]
    installed = tuple(int(p) for p in version("streamlit").split(".")[:2])
    assert installed >= tuple(int(p) for p in floor[1].split(".")[:2])
