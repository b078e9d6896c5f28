"""Getting at the files of a package: Debian ``.deb`` archives, or an installed Python package.

Debian packages are fetched with ``apt-get download PKG`` (no root needed) into a cache folder and
unpacked with ``dpkg -x`` beside it; both steps are skipped when the cache already holds them, so
only the first run needs the network. The cache is ``--cache``, else ``$IMGCOMP_CACHE/debs``,
else ``$XDG_CACHE_HOME/imgcomp/debs``, else ``~/.cache/imgcomp/debs``.

A *fetcher* is any callable ``fetcher(name) -> ExtractedPackage``; :class:`PackageFetcher` is the
real one, and tests pass their own pointing at a local folder.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imgcomp.io import cache_root, file_sha256
from imgcomp.errors import ImgcompError

# Command that downloads PKG's .deb into the current folder (the package name is appended).
APT_DOWNLOAD_COMMAND: tuple[str, ...] = ("apt-get", "download")

# Python distributions whose installed files serve as image sources: name -> import name.
PYTHON_PACKAGES = {"scikit-image": "skimage"}

_EXTRACTED_MARKER = ".imgcomp-extracted"


@dataclass(frozen=True)
class ExtractedPackage:
    """A package's files on disk: ``root`` holds them at their installed paths."""

    name: str
    version: str
    root: Path
    kind: str = "debian"  # or "python"
    archive: str | None = None  # the .deb file name, for the record
    archive_sha256: str | None = None


Fetcher = Callable[[str], ExtractedPackage]


def default_cache_dir() -> Path:
    """Where ``.deb`` files are kept unless ``--cache`` says otherwise."""
    return cache_root() / "debs"


class PackageFetcher:
    """Fetch and unpack packages into ``cache_dir``, reusing what is there."""

    def __init__(self, cache_dir: str | os.PathLike | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    def __call__(self, name: str) -> ExtractedPackage:
        if name in PYTHON_PACKAGES:
            return python_package(name)
        deb = self._cached_deb(name) or self._download(name)
        version = _deb_field(deb, "Version")
        root = self.cache_dir / deb.name.removesuffix(".deb")
        if not (root / _EXTRACTED_MARKER).is_file():
            _extract(deb, root)
        return ExtractedPackage(name, version, root, "debian", deb.name, file_sha256(deb))

    def _cached_deb(self, name: str) -> Path | None:
        debs = [path for path in self.cache_dir.glob(f"{name}_*.deb") if path.is_file()]
        if not debs:
            return None
        versions = {path: _deb_field(path, "Version") for path in debs}
        return max(
            debs, key=functools.cmp_to_key(lambda a, b: _compare_versions(versions[a], versions[b]))
        )

    def _download(self, name: str) -> Path:
        if shutil.which(APT_DOWNLOAD_COMMAND[0]) is None:
            raise ImgcompError(
                f"cannot fetch Debian package {name!r}: {APT_DOWNLOAD_COMMAND[0]} not found (this "
                f"needs a Debian or Ubuntu system); download {name}_*.deb elsewhere and put it in "
                f"{self.cache_dir}"
            )
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # apt-get writes into the working folder: use a scratch one so a failed or interrupted
        # download never leaves a partial .deb in the cache.
        with tempfile.TemporaryDirectory(dir=self.cache_dir, prefix=".download-") as scratch:
            try:
                result = subprocess.run(
                    [*APT_DOWNLOAD_COMMAND, name], cwd=scratch, capture_output=True, text=True
                )
            except OSError as exc:
                raise ImgcompError(f"cannot fetch Debian package {name!r}: {exc}") from None
            debs = sorted(Path(scratch).glob(f"{name}_*.deb"))
            if result.returncode != 0 or not debs:
                raise ImgcompError(
                    f"cannot fetch Debian package {name!r} ({_last_error_line(result)}); check the "
                    f"name, run 'apt-get update' (or enable a repository that has it), or put "
                    f"{name}_*.deb into {self.cache_dir}"
                )
            final = self.cache_dir / debs[0].name
            os.replace(debs[0], final)
        return final


def python_package(name: str) -> ExtractedPackage:
    """An installed Python distribution as a package rooted at the folder holding its module."""
    module = importlib.import_module(PYTHON_PACKAGES[name])
    root = Path(module.__file__).parent.parent
    return ExtractedPackage(name, importlib.metadata.version(name), root, "python")


def _extract(deb: Path, root: Path) -> None:
    scratch = root.with_name(f".{root.name}.partial")
    if scratch.exists():
        shutil.rmtree(scratch)
    if root.exists():
        shutil.rmtree(root)
    _run(["dpkg", "-x", str(deb), str(scratch)], f"cannot unpack {deb.name}")
    (scratch / _EXTRACTED_MARKER).write_text(deb.name + "\n")
    os.replace(scratch, root)


def _deb_field(deb: Path, field: str) -> str:
    failure = f"{deb}: not a readable .deb (delete it to download it again)"
    return _run(["dpkg-deb", "-f", str(deb), field], failure).strip()


def _compare_versions(a: str, b: str) -> int:
    if a == b:
        return 0
    newer = subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0
    return 1 if newer else -1


def _run(command: list[str], failure: str) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except OSError as exc:
        raise ImgcompError(
            f"{failure}: {exc} (dpkg is needed; install it or use Debian/Ubuntu)"
        ) from None
    if result.returncode != 0:
        raise ImgcompError(f"{failure}: {_last_error_line(result)}")
    return result.stdout


def _last_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (result.stderr or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E:")] or lines
    return errors[-1] if errors else f"exit status {result.returncode}"
