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


# Which module of this package owns each top-level command. A run of one known command imports
# only its module (``imgcomp decode`` starts without the training and evaluation code); anything
# else (help, completion, an unknown word) registers them all.
COMMAND_MODULES = {
    "demo": "demo", "encode": "codec", "decode": "codec", "info": "codec", "data": "data",
    "eval": "evaluate", "report": "evaluate", "compare": "evaluate", "codecs": "evaluate",
    "train": "train", "visualize": "train", "bench": "bench", "metric": "metric", "study": "study",
    "downstream": "downstream",
}


def _register_commands(argv: list[str] | None = None) -> None:
    import importlib

    first = (argv or [None])[0]
    modules = [COMMAND_MODULES[first]] if first in COMMAND_MODULES else list(dict.fromkeys(COMMAND_MODULES.values()))
    for name in modules:
        importlib.import_module(f"imgcomp.cli.{name}").register(app)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {escape(str(message))}", highlight=False, soft_wrap=True)


def main() -> None:
    """Console entry point."""
    warnings.showwarning = _show_warning
    _register_commands(sys.argv[1:])
    try:
        app()
    except ImgcompError as exc:
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/bold red]")
        sys.exit(130)
