"""What travels to a lent GPU machine, and whether it fits (docs/training-gpu.md).

The working tree travels: tracked files, untracked files git does not ignore, and the ignored
folders named in ``carry`` (here ``.gpu``: wheels and the packed training set); 64 MiB in all.

    python -m imgcomp.training.travel [CARRY ...]      # default: .gpu
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LIMIT_BYTES = 64 * 1024 * 1024


def _git_files(root: Path) -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root, check=True, capture_output=True,
    ).stdout
    return [root / name for name in out.decode().split("\0") if name]


def travel_size(root: str | Path = ".", carry: list[str] | None = None) -> dict:
    """Bytes of the working tree and of each carried folder (and its subfolders)."""
    root = Path(root).resolve()
    files = [p for p in _git_files(root) if p.is_file()]
    parts = {"working tree (git tracked + untracked, not ignored)": sum(p.stat().st_size for p in files)}
    counted = set(files)
    for name in carry if carry is not None else [".gpu"]:
        base = root / name
        if not base.exists():
            continue
        folders = [base] if base.is_file() else sorted({p.parent for p in base.rglob("*") if p.is_file()})
        for folder in folders:
            members = [folder] if folder.is_file() else [p for p in folder.iterdir() if p.is_file()]
            size = sum(p.stat().st_size for p in members if p not in counted)
            counted.update(members)
            parts[f"carry {folder.relative_to(root)}"] = size
    total = sum(parts.values())
    return {"parts": parts, "total_bytes": total, "limit_bytes": LIMIT_BYTES, "fits": total <= LIMIT_BYTES}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    report = travel_size(".", args or None)
    for name, size in report["parts"].items():
        print(f"  {size / 2**20:8.2f} MiB  {name}")
    print(f"  {report['total_bytes'] / 2**20:8.2f} MiB  total that travels (limit 64 MiB): "
          f"{'fits' if report['fits'] else 'TOO LARGE'}")
    print(json.dumps({k: v for k, v in report.items() if k != "parts"}))
    return 0 if report["fits"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
