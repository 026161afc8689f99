"""The report renders in a real browser: headless Chromium takes a screenshot of the page.

Chromium is looked up on PATH (``chromium``, then ``chromium-browser``). When it is absent the
test installs Debian's package only if it runs as root with ``DENIABLE_INSTALL_CHROMIUM=1``
(``make test`` provides the browser); otherwise it is skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deniable.report import render_report
from test_report import synthetic_result

NAMES = ("chromium", "chromium-browser")
TIMEOUT_S = 60


def find_chromium() -> str | None:
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _install_chromium() -> str | None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
        except (OSError, subprocess.SubprocessError):
            return None
    return find_chromium()


@pytest.fixture(scope="module")
def chromium() -> str:
    found = find_chromium()
    if found:
        return found
    allowed = os.environ.get("DENIABLE_INSTALL_CHROMIUM") == "1"
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if not (allowed and is_root):
        pytest.skip(
            "no chromium or chromium-browser on PATH; install it, or run as root with "
            "DENIABLE_INSTALL_CHROMIUM=1 to let the test apt-get install it"
        )
    installed = _install_chromium()
    if not installed:
        pytest.skip("apt-get install chromium failed; the screenshot test needs Chromium")
    return installed


def test_report_screenshot_in_headless_chromium(chromium: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    members = np.repeat([True, False], 400)
    scores = {"scores": np.where(members, 1.5, 0.0) + rng.normal(size=800), "is_member": members}
    result = synthetic_result()
    result["fairness"] = {"per_group": [{"group": "a", "accuracy": 0.91}]}
    report = render_report(result, tmp_path, audit_scores=scores)
    shot = tmp_path / "shot.png"
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1200,3000",
        report.resolve().as_uri(),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium took more than {TIMEOUT_S} s to screenshot the report")
    assert shot.exists(), f"no screenshot; chromium exited {done.returncode}: {done.stderr[-2000:]}"
    assert shot.stat().st_size > 20_000
    with Image.open(shot) as image:
        assert image.size == (1200, 3000)
        pixels = np.asarray(image.convert("RGB"))
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50, "the screenshot is (nearly) a single colour"
    # The dark page header is drawn at the top; the body below it is light.
    assert pixels[:40].mean() < 80 and pixels[200:].mean() > 180
