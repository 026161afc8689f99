"""Render a run's privacy report: ``result.json`` (a dict) → one self-contained ``report.html``.

Self-contained means one file that needs nothing else: the CSS is inline, the plots are PNG
data URIs, and the page loads no script, font or stylesheet from anywhere. Every value is
escaped by Jinja2's autoescaping, so a config string such as ``<script>`` shows as text.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from deniable.errors import DeniableError
from deniable.report.view import build_view

REPORT_NAME = "report.html"
RESULT_NAME = "result.json"

_ENV = Environment(
    loader=PackageLoader("deniable.report", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def render_html(
    result: Mapping[str, object],
    run_dir: Path,
    *,
    audit_scores: Mapping[str, object] | None = None,
) -> str:
    """The report page for ``result`` as a string (see :func:`render_report`)."""
    view = build_view(result, run_dir, audit_scores)
    return _ENV.get_template("report.html").render(view=view)


def render_report(
    result: Mapping[str, object],
    run_dir: Path,
    *,
    audit_scores: Mapping[str, object] | None = None,
) -> Path:
    """Write ``run_dir/report.html`` for a run's ``result`` dict and return its path.

    ``result`` is what :func:`deniable.pipeline.run` returns (or its ``result.json``); only
    ``epsilon`` and ``delta`` are required, absent parts render as "—" or a note (an absent or
    null ``audit`` says the run was not audited). ``audit_scores``, when given, adds a log-log
    ROC: ``{"scores": array, "is_member": bool array}`` for one attack, or
    ``{name: {"scores": …, "is_member": …}}`` for several. The file is replaced atomically.
    Raises :class:`DeniableError` with one line for a result or scores it cannot show.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DeniableError(f"run folder {run_dir} does not exist; give the folder of a run")
    html = render_html(result, run_dir, audit_scores=audit_scores)
    target = run_dir / REPORT_NAME
    # A fresh name beside the target (not mkstemp, whose 0600 mode would ignore the umask).
    tmp = run_dir / f".{REPORT_NAME}.{secrets.token_hex(4)}.tmp"
    try:
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def load_result(run_dir: Path) -> dict[str, object]:
    """``run_dir/result.json`` as a dict; a one-line :class:`DeniableError` when it is missing,
    unreadable or not a run result."""
    path = Path(run_dir) / RESULT_NAME
    if not Path(run_dir).is_dir():
        raise DeniableError(f"run folder {run_dir} does not exist; give the folder of a run")
    if not path.is_file():
        raise DeniableError(f"{run_dir} has no {RESULT_NAME}; give the folder of a finished run")
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DeniableError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DeniableError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from None
    if not isinstance(result, dict):
        raise DeniableError(f"{path} must hold a JSON object, got {type(result).__name__}")
    return result


def report_command(run_dir: Path) -> Path:
    """``deniable report RUN_DIR``: render the report of a finished run from its result.json."""
    return render_report(load_result(run_dir), Path(run_dir))
