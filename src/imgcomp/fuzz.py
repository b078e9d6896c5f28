"""Fuzzing the decoder: mutated headers and payloads of small valid files, with repaired checksums.

Every case must end in :class:`ImgcompError` or a decoded image, within bounds of time and memory
that the file's content justifies (:mod:`imgcomp.limits`). Used by ``tests/test_limits.py`` (a few
thousand seeded cases in a subprocess, whose peak RSS is read back) and ``imgcomp bench fuzz``.
"""

from __future__ import annotations

import random
import resource
import struct
import time
import zlib
from dataclasses import dataclass, field

import numpy as np

from imgcomp import container
from imgcomp.errors import ImgcompError


@dataclass
class Parts:
    """A file split into editable fields; :meth:`assemble` recomputes the CRC (or keeps it)."""

    version: int
    first: bytes  # magic, version|quality, system id, stream version, model tag (v2/v3: no ids)
    width: int
    height: int
    table: list[tuple[int, int]]  # v4: (kind, length); v2/v3: [(0, words)]
    body: bytes

    def assemble(self, repair_crc: bool = True) -> bytes:
        head = bytearray(self.first)
        head += container._varint(max(self.width - 1, 0)) + container._varint(max(self.height - 1, 0))
        if self.version == 4:
            head.append(len(self.table) & 0xFF)
            for kind, length in self.table:
                head += bytes([kind & 0xFF]) + container._varint(length)
        else:
            head += container._varint(self.table[0][1])
        crc = zlib.crc32(self.body, zlib.crc32(bytes(head))) if repair_crc else random.getrandbits(32)
        return bytes(head) + struct.pack("<I", crc) + self.body


def split(data: bytes) -> Parts:
    header, sections = container.unpack(data)
    if header.version == 4:
        first = data[:7]
        table = [(kind, len(body)) for kind, body in sections.items()]
    else:
        first = data[:5]
        table = [(0, len(sections[0]) // 4)]
    return Parts(header.version, first, header.width, header.height, table, b"".join(sections.values()))


def legacy_copy(data: bytes, version: int = 2) -> bytes:
    """A version-2 file with the same system payload (what imgcomp 0.2-0.4 wrote)."""
    parts = split(data)
    payload = container.unpack(data)[1][container.SECTION_SYSTEM]
    quality = parts.first[2] & 0x0F
    first = container.MAGIC + bytes([(version << 4) | quality]) + parts.first[5:7]
    return Parts(version, first, parts.width, parts.height, [(0, len(payload) // 4)], payload).assemble()


def _size(rng: random.Random, current: int) -> int:
    choice = rng.random()
    if choice < 0.3:
        return max(1, current + rng.randint(-8, 8))
    if choice < 0.6:
        return rng.choice([1, 2, 7, 8, 9, 127, 128, 129, 1023, 1024, 1025])
    return min(container.MAX_SIDE + 1, int(2 ** rng.uniform(0, 16.1)))


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to three mutations of a valid file's fields or bytes; the CRC repaired 3 times in 4."""
    parts = split(data)
    raw_flips = []
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        if op < 0.25:
            if rng.random() < 0.5:
                parts.width = _size(rng, parts.width)
            else:
                parts.height = _size(rng, parts.height)
        elif op < 0.35:
            first = bytearray(parts.first)
            first[rng.randrange(2, len(first))] ^= 1 << rng.randrange(8)
            parts.first = bytes(first)
        elif op < 0.45 and parts.table:
            index = rng.randrange(len(parts.table))
            kind, length = parts.table[index]
            if rng.random() < 0.3:
                kind = rng.choice([0, 1, 2, 255])
            else:
                length = max(0, length + rng.choice([-4, -1, 1, 4, rng.randint(-64, 64)]))
            parts.table[index] = (kind, length)
        elif op < 0.5:
            if rng.random() < 0.5 and len(parts.table) > 1:
                parts.table.pop()
            else:
                parts.table.append((rng.choice([0, 1, 2]), rng.randint(0, 8)))
        elif op < 0.75 and parts.body:
            body = bytearray(parts.body)
            for _ in range(rng.randint(1, 4)):
                body[rng.randrange(len(body))] = rng.randrange(256)
            parts.body = bytes(body)
        elif op < 0.85:
            cut = rng.randrange(len(parts.body) + 1)
            parts.body = parts.body[:cut] if rng.random() < 0.5 else parts.body + bytes(rng.randrange(16))
            if rng.random() < 0.7 and parts.table:  # keep the table consistent, so decoding starts
                kind, length = parts.table[-1]
                rest = sum(n for _, n in parts.table[:-1]) * (4 if parts.version != 4 else 1)
                parts.table[-1] = (kind, max(0, len(parts.body) - rest) // (4 if parts.version != 4 else 1))
        else:
            raw_flips.append(rng.random())
    out = bytearray(parts.assemble(repair_crc=rng.random() < 0.75))
    for where in raw_flips:
        if out:
            out[int(where * len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def peak_rss_bytes() -> int:
    """This process's peak resident memory: VmHWM where Linux has it (``ru_maxrss`` also counts the
    parent's memory a forked child inherited before exec), else ``ru_maxrss`` (KiB)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class FuzzReport:
    cases: int = 0
    errors: int = 0
    decoded: int = 0
    seconds: float = 0.0
    worst_seconds: float = 0.0
    worst_case: int = -1
    worst_pixels: int = 0  # pixels claimed by the slowest case
    peak_rss: int = 0
    failures: list[str] = field(default_factory=list)  # anything but ImgcompError or an image

    @property
    def cases_per_second(self) -> float:
        return self.cases / max(self.seconds, 1e-9)

    def summary(self) -> str:
        return (
            f"{self.cases} cases ({self.errors} refused, {self.decoded} decoded) in {self.seconds:.1f} s: "
            f"{self.cases_per_second:.0f} cases/s; worst case {self.worst_seconds * 1000:.0f} ms "
            f"(#{self.worst_case}, {self.worst_pixels} pixels claimed); peak memory {self.peak_rss / 2**20:.0f} MB; "
            f"{len(self.failures)} failures"
        )


def run(
    files: list[bytes], model, cases: int | None = None, seconds: float | None = None, seed: int = 0,
    max_pixels: int = 1 << 20,
) -> FuzzReport:
    """Decode ``cases`` mutations (or as many as fit in ``seconds``) of ``files`` with ``model``."""
    from imgcomp.api import decode_image

    rng = random.Random(seed)
    report = FuzzReport()
    started = time.perf_counter()
    while (cases is None or report.cases < cases) and (seconds is None or time.perf_counter() - started < seconds):
        data = mutate(rng, rng.choice(files))
        begun = time.perf_counter()
        try:
            pixels = decode_image(data, model=model, max_pixels=max_pixels)
            if not (isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8 and pixels.ndim == 3):
                report.failures.append(f"case {report.cases}: decoded to {type(pixels)}")
            report.decoded += 1
        except ImgcompError:
            report.errors += 1
        except Exception as exc:  # noqa: BLE001 - a fuzz finding
            report.failures.append(f"case {report.cases}: {type(exc).__name__}: {exc} (file {data.hex()})")
        took = time.perf_counter() - begun
        if took > report.worst_seconds:
            report.worst_seconds, report.worst_case = took, report.cases
            try:
                header, _ = container.unpack(data)
                report.worst_pixels = header.width * header.height
            except ImgcompError:
                report.worst_pixels = 0
        report.cases += 1
    report.seconds = time.perf_counter() - started
    report.peak_rss = peak_rss_bytes()
    return report


def sample_files(model) -> list[bytes]:
    """Small valid files of ``model`` to mutate: three sizes, with and without the low-pass
    section, and a version-2 copy (read with the pixel limit only)."""
    from imgcomp.api import encode_image
    from imgcomp.postfilter.lowpass import LowpassSettings

    rng = np.random.default_rng(0)
    files = []
    for height, width, quality, lowpass in [(20, 28, 2, "auto"), (16, 16, 1, None), (40, 24, 2, LowpassSettings(16, 4))]:
        image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        files.append(encode_image(image, min(quality, model.system.qualities(model)), model, lowpass=lowpass).data)
    files.append(legacy_copy(files[1]))
    return files


def main(argv: list[str] | None = None) -> None:
    """``python -m imgcomp.fuzz MODEL CASES [MAX_PIXELS] [SEED]``: one JSON line (used by the tests,
    in a subprocess whose peak memory they read)."""
    import json
    import sys

    import torch

    from imgcomp.zoo import get_model

    args = sys.argv[1:] if argv is None else argv
    torch.set_num_threads(1)
    model = get_model(args[0])
    max_pixels = int(args[2]) if len(args) > 2 else 1 << 16
    report = run(sample_files(model), model, cases=int(args[1]), max_pixels=max_pixels, seed=int(args[3]) if len(args) > 3 else 0)
    record = {k: v for k, v in report.__dict__.items()}
    record["cases_per_second"] = report.cases_per_second
    print(json.dumps(record))


if __name__ == "__main__":
    main()
