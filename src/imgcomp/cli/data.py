"""``imgcomp data``: build the training/validation sets and download standard test sets."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

data_app = typer.Typer(
    help="Prepare training/validation data (offline, from Debian packages) and download test sets.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the main app."""
    app.add_typer(data_app, name="data")


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,  # the summary line (or the error) is what stays on screen
    )


@data_app.command()
def prepare(
    out: Path = typer.Option(
        ..., "--out", help="Folder to create train/, val/, val-textured/ and manifest.json in."
    ),
    cache: Path | None = typer.Option(
        None,
        "--cache",
        help="Folder for downloaded .deb files and their unpacked contents "
        "(default: $IMGCOMP_CACHE/debs, else $XDG_CACHE_HOME/imgcomp/debs, "
        "else ~/.cache/imgcomp/debs).",
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild every file, even those up to date."),
    stats: bool = typer.Option(
        False,
        "--stats",
        help="Then print each split's texture statistics (mean luma gradient, JPEG q75 bpp).",
    ),
) -> None:
    """Build the training pool and the validation sets from Debian packages and scikit-image.

    Writes train/ (the photo pool), val/ (smooth wallpapers, the old validation set),
    val-textured/ (ordinary textured photos, for model selection) and manifest.json.

    Needs apt-get and dpkg (Debian/Ubuntu; no root) and, the first time, network access to the
    Debian archive. Reruns skip files that are already up to date.
    """
    from imgcomp.data.prepare import prepare_dataset

    with _progress_bar() as bar:
        task = bar.add_task("preparing", total=None)

        def on_progress(message: str, done: int, total: int) -> None:
            bar.update(task, description=message, completed=done, total=total)

        report = prepare_dataset(out, cache_dir=cache, force=force, on_progress=on_progress)
        bar.update(task, description="done")
    counts = ", ".join(f"{count} {split}" for split, count in report.counts.items())
    typer.echo(
        f"{out}: {counts} photos ({len(report.written)} written, {len(report.skipped)} up to date) "
        f"in {report.seconds:.1f} s; provenance in {report.manifest_path}"
    )
    for source, reason in report.dropped:
        typer.echo(f"  dropped {source}: {reason}")
    if stats:
        from imgcomp.data.prepare import texture_statistics

        for split, rows in texture_statistics(out).items():
            texture = sorted(row.texture for row in rows)
            bpp = sorted(row.jpeg_bpp_q75 for row in rows)
            typer.echo(
                f"  {split}: {len(rows)} images, texture mean {sum(texture) / len(rows):.2f} "
                f"(median {texture[len(rows) // 2]:.2f}), JPEG q75 mean {sum(bpp) / len(rows):.3f} "
                f"bpp (median {bpp[len(rows) // 2]:.3f})"
            )


@data_app.command()
def kodak(
    out: Path = typer.Option(..., "--out", help="Folder for kodim01.png ... kodim24.png."),
    base_url: str | None = typer.Option(
        None,
        "--base-url",
        help="Mirror holding kodimNN.png (default: https://r0k.us/graphics/kodak/kodak).",
    ),
) -> None:
    """Download the 24 Kodak test photos, each checked against its known SHA-256."""
    from imgcomp.data.kodak import KODAK_BASE_URL, KODAK_FILES, download_kodak

    with _progress_bar() as bar:
        task = bar.add_task("kodak", total=len(KODAK_FILES))
        fetched = []

        def on_file(name: str, downloaded: bool) -> None:
            fetched.append(downloaded)
            bar.update(task, description=name, advance=1)

        paths = download_kodak(
            out, base_url=base_url or KODAK_BASE_URL, files=KODAK_FILES, on_file=on_file
        )
    typer.echo(f"{out}: {len(paths)} Kodak images verified ({sum(fetched)} downloaded)")


@data_app.command()
def pack(
    out: Path = typer.Option(..., "--out", help="Folder for the crops and manifest.json (e.g. .gpu/data)."),
    source: list[Path] = typer.Option(
        [Path("data/train")], "--from", help="Training pool folder(s) to crop (repeatable; default data/train)."
    ),
    max_mib: float = typer.Option(40.0, "--max-mib", help="Size budget of the packed set in MiB."),
    crop: int = typer.Option(320, "--crop", help="Crop size in pixels (at least the training crop)."),
    min_size: int | None = typer.Option(None, "--min-size", help="Smaller images give crops of their own size if at least this (default: min(crop, 256), the GPU recipes' training crop)."),
    fmt: str = typer.Option("jpeg", "--format", help="jpeg (4:4:4) or png."),
    quality: int = typer.Option(95, "--quality", help="JPEG quality."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the crops."),
    max_crops: int | None = typer.Option(None, "--max-crops", help="Stop after this many crops."),
    force: bool = typer.Option(False, "--force", help="Replace an existing packed set in --out."),
) -> None:
    """Pack a travelling training set (random crops within a size budget) for a GPU job.

    See docs/training-gpu.md: the packed folder travels with the working tree to a lent GPU
    machine, whose whole load (code, wheels, data) must stay under 64 MiB.
    """
    from imgcomp.data.pack import pack_training_set

    report = pack_training_set(
        source, out, int(max_mib * 1024 * 1024), crop=crop, fmt=fmt, quality=quality, seed=seed,
        max_crops=max_crops, force=force, min_size=min_size,
    )
    typer.echo(
        f"{report.out}: {report.crops} crops of up to {crop}px from {report.sources} images, "
        f"{report.total_bytes / 2**20:.1f} MiB; manifest in {report.out / 'manifest.json'}"
    )


@data_app.command("text-scenes")
def text_scenes(
    out: Path = typer.Option(..., "--out", help="Folder for text-NN.png, text-NN.json and scenes.json."),
    backgrounds: Path = typer.Option(Path("data/train"), "--backgrounds", help="Folder of photos to draw on (default data/train, from imgcomp data prepare)."),
    count: int = typer.Option(24, "--count", help="Number of scenes."),
    size: str = typer.Option("768x512", "--size", help="WIDTHxHEIGHT of each scene."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed, photos and fonts give the same files."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing scene files."),
) -> None:
    """Render text scenes with known text (signs, labels, document snippets, overlays) in Debian's
    DejaVu fonts over photos, with ground-truth line boxes and text: the test set of
    `imgcomp downstream ocr`."""
    from imgcomp.data.text_scenes import generate_text_scenes
    from imgcomp.errors import ImgcompError

    width, sep, height = size.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise ImgcompError(f"--size {size!r}: expected WIDTHxHEIGHT, e.g. 768x512")
    report = generate_text_scenes(backgrounds, out, count=count, width=int(width), height=int(height), seed=seed, force=force)
    typer.echo(f"{out}: {len(report.images)} scenes, {report.lines} text lines ({report.words} words); fonts and versions in scenes.json")
