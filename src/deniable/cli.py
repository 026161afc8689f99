"""The ``deniable`` command line (placeholder until the commands land)."""

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def version() -> None:
    """Print the version."""
    from deniable import __version__

    print(__version__)


def main() -> None:
    app()
