"""The ``imgcomp`` command line.

Each area of the library contributes its commands from its own module here (``data``, ``evaluate``,
``train``, ``codec``); this module assembles them, and turns library errors into a one-line message
and a non-zero exit instead of a traceback.
"""

from __future__ import annotations

import sys
import warnings

import typer
from rich.console import Console
from rich.markup import escape

from imgcomp.errors import ImgcompError

app = typer.Typer(
    name="imgcomp",
    help=(
        "Learned lossy image compression. Compress images with a trained model (encode/decode/info), "
        "prepare data and train your own model (data, train), and measure codecs against JPEG, "
        "WebP, HEIC, AVIF and JPEG XL (eval, report, compare)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode="rich",
)
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from imgcomp import __version__

        typer.echo(f"imgcomp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Learned lossy image compression."""


def _register_commands() -> None:
    from imgcomp.cli import bench, codec, data, demo, evaluate, train

    for module in (demo, codec, data, evaluate, train, bench):
        module.register(app)
    from imgcomp.cli import metric; metric.register(app)  # noqa: E702
    from imgcomp.cli import downstream; downstream.register(app)  # noqa: E702


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {escape(str(message))}", highlight=False, soft_wrap=True)


def main() -> None:
    """Console entry point."""
    warnings.showwarning = _show_warning
    _register_commands()
    try:
        app()
    except ImgcompError as exc:
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/bold red]")
        sys.exit(130)
