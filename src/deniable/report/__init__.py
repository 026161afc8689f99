"""The HTML privacy report of a run: the claim, ε over steps, accuracy, the audit, the config.

``render_report(result, run_dir)`` writes ``run_dir/report.html`` from the dict that
:func:`deniable.pipeline.run` returns; ``report_command(run_dir)`` does the same from a finished
run's ``result.json`` (``deniable report RUN_DIR``).
"""

from deniable.report.render import load_result, render_html, render_report, report_command

__all__ = ["load_result", "render_html", "render_report", "report_command"]
