"""``imgcomp demo``: the README's first command."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command()(demo)


def demo() -> None:
    """Compress the bundled photo and print its size and quality (being built)."""
    typer.echo("imgcomp demo: under construction")
