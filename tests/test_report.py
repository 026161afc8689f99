"""The HTML privacy report: content as text, embedded plots, escaping, missing parts, errors."""

from __future__ import annotations

import base64
import copy
import io
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deniable.errors import DeniableError
from deniable.report import render_report, report_command
from deniable.report.render import render_html

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class Page(HTMLParser):
    """Collects the visible text, the images, the element names and checks tag balance."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.urls: list[str] = []
        self.ids: list[str] = []
        self.chunks: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        if tag == "img":
            self.images.append(found)
        for name in ("src", "href"):
            if found.get(name):
                self.urls.append(str(found[name]))
        if found.get("id"):
            self.ids.append(str(found["id"]))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.chunks).split())


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    assert not page.errors, page.errors[:5]
    assert page.stack == [], f"unclosed elements: {page.stack}"
    return page


def synthetic_result() -> dict[str, object]:
    """A result.json as :func:`deniable.pipeline.run` writes it, with round numbers."""
    return {
        "epsilon": 2.5,
        "delta": 1e-5,
        "accountant": "pld",
        "relation": "add_remove",
        "unit": "user",
        "noise_multiplier": 1.25,
        "sample_rate": 0.0125,
        "steps": 400,
        "secure_noise": True,
        "test_accuracy": 0.875,
        "train_accuracy": 0.9,
        "baseline_accuracy": 0.93,
        "baseline_train_accuracy": 0.99,
        "audit_epsilon_lower_bound": 0.42,
        "report": None,
        "epsilon_curve": [
            {"step": s, "epoch": s / 80, "epsilon": 2.5 * (s / 400) ** 0.5}
            for s in range(40, 401, 40)
        ],
        "resumed": False,
        "dataset": {"name": "digits", "train_size": 1438, "test_size": 359, "privacy_units": 700},
        "config": {
            "dataset": "digits",
            "data_dir": None,
            "model": "mlp",
            "epochs": 5.0,
            "max_grad_norm": 0.75,
            "target_epsilon": 2.5,
            "delta": 1e-5,
            "sampling": "poisson",
            "seed": None,
            "audit": True,
        },
        "versions": {"deniable": "0.1.0", "torch": "2.13.0+cpu", "python": "3.11.7"},
        "run_dir": "runs/x",
        "audit": {
            "epsilon_lower_bound": 0.42,
            "confidence": 0.95,
            "private": {
                "bound": {
                    "epsilon": 0.42,
                    "delta": 1e-5,
                    "confidence": 0.95,
                    "method": "one-run",
                    "threshold": None,
                    "relation": "add_remove",
                    "details": {"m": 1000, "guesses": 50, "correct": 37, "p_value": 0.0055},
                },
                "claimed_epsilon": 2.4999,
                "canaries": 1000,
                "included": 481,
                "test_accuracy": 0.86,
            },
            "non_private": {
                "bound": {
                    "epsilon": 1.234,
                    "delta": 1e-5,
                    "confidence": 0.95,
                    "method": "one-run",
                    "details": {"m": 1000, "guesses": 100, "correct": 91},
                },
                "claimed_epsilon": None,
                "canaries": 1000,
                "included": 481,
                "test_accuracy": 0.94,
            },
            "loss_attack_on_reported_model": {
                "auc": 0.5321,
                "tpr_at_fpr": {"0.01": 0.0123, "0.001": 0.0045, "0.0": 0.0011},
                "advantage": 0.0468,
                "n_members": 1438,
                "n_nonmembers": 359,
            },
        },
    }


def decode_images(page: Page) -> list[Image.Image]:
    out: list[Image.Image] = []
    for img in page.images:
        src = str(img["src"])
        assert src.startswith("data:image/png;base64,"), src[:40]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        image = Image.open(io.BytesIO(data))
        image.verify()
        out.append(Image.open(io.BytesIO(data)))
        assert img.get("alt")
    return out


def test_report_shows_the_claim_accuracy_and_audit_as_text(tmp_path: Path) -> None:
    path = render_report(synthetic_result(), tmp_path)
    assert path == tmp_path / "report.html"
    page = parse(path.read_text(encoding="utf-8"))
    text = page.text
    for needle in [
        "ε = 2.500",  # the claim
        "δ = 1e-05",
        "add/remove-one",
        "privacy unit: user",
        "accountant: pld",
        "Poisson sampling",
        "0.0125",  # q
        "1.25",  # σ
        "400",  # steps
        "0.75",  # clipping norm
        "OS CSPRNG",  # secure noise
        "87.5%",  # DP test accuracy
        "90.0%",  # DP train accuracy
        "93.0%",  # baseline test
        "99.0%",  # baseline train
        "5.5 percentage points",  # cost of privacy
        "0.420 at 95% confidence",  # the audit bound
        "1.234",  # non-private bound
        "Consistent",
        "0.5321",  # LOSS AUC
        "TPR at 1% FPR",
        "TPR at 0.1% FPR",
        "TPR at 0% FPR",
        "1.23%",
        "0.45%",
        "0.11%",
        "2.13.0+cpu",  # versions
        "max_grad_norm = 0.75",  # TOML config
    ]:
        assert needle in text, needle
    assert {"claim", "epsilon", "accuracy", "audit", "reproducibility"} <= set(page.ids)
    assert "beyond" not in page.ids  # no such keys in this result
    images = decode_images(page)
    assert len(images) == 3  # ε curve, accuracy bars, audit bars
    assert all(im.width > 300 and im.height > 100 for im in images)


def test_report_is_self_contained(tmp_path: Path) -> None:
    page = parse(render_report(synthetic_result(), tmp_path).read_text(encoding="utf-8"))
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    for url in page.urls:
        assert url.startswith(("data:", "#")), url


def test_missing_audit_gives_a_clear_note(tmp_path: Path) -> None:
    for absent in ("null", "missing"):
        result = synthetic_result()
        if absent == "null":
            result["audit"] = None
        else:
            del result["audit"]
        result["audit_epsilon_lower_bound"] = None
        page = parse(render_html(result, tmp_path))
        assert "Not audited" in page.text and "deniable audit RUN_DIR" in page.text
        assert "not audited" in page.text  # the summary tile
        assert len(decode_images(page)) == 2  # no audit plot


def test_minimal_result_renders(tmp_path: Path) -> None:
    page = parse(render_html({"epsilon": 1.0, "delta": 1e-6}, tmp_path))
    assert "ε = 1.000" in page.text and "δ = 1e-06" in page.text
    assert "no ε curve" in page.text and "Not audited" in page.text
    assert page.images == []


def test_values_are_escaped(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    result = synthetic_result()
    result["config"] = {**result["config"], "model": evil, evil: "key"}  # type: ignore[dict-item]
    result["unit"] = evil
    result["beyond_privacy"] = {"note": evil, "rows": [{evil: 1}]}
    html = render_report(result, tmp_path).read_text(encoding="utf-8")
    assert evil not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    page = parse(html)
    assert "script" not in page.tags
    assert evil in page.text  # shown to the reader as text


def test_beyond_privacy_is_rendered_generically(tmp_path: Path) -> None:
    result = synthetic_result()
    result["fairness"] = {
        "per_group": [{"group": "a", "accuracy": 0.91}, {"group": "b", "accuracy": 0.62}],
        "disparate_impact": 0.29,
    }
    page = parse(render_html(result, tmp_path))
    assert "beyond" in page.ids
    for needle in ("fairness", "per_group", "disparate_impact", "0.29", "0.62", "group"):
        assert needle in page.text, needle


def test_warnings_for_a_lower_bound_above_the_claim_and_a_large_delta(tmp_path: Path) -> None:
    result = synthetic_result()
    audit = copy.deepcopy(result["audit"])
    assert isinstance(audit, dict)
    audit["private"]["bound"]["epsilon"] = 3.1
    result["audit"] = audit
    result["delta"] = 0.01  # n = 700 units: δ ≥ 1/n
    text = parse(render_html(result, tmp_path)).text
    assert "EXCEEDS the claimed ε = 2.500" in text
    assert "not below 1/n" in text


def test_roc_from_audit_scores_is_log_log(tmp_path: Path) -> None:
    from deniable.audit.metrics import roc_curve
    from deniable.report.plots import roc_figure

    rng = np.random.default_rng(7)
    members = np.repeat([True, False], 500)
    strong = np.where(members, 3.0, 0.0) + rng.normal(size=1000)
    separable = np.where(members, 1.0, 0.0) + rng.random(1000) * 0.5  # members all above
    scores = {
        "strong": {"scores": strong, "is_member": members},
        "separable": {"scores": separable, "is_member": members.astype(int)},
    }
    page = parse(render_html(synthetic_result(), tmp_path, audit_scores=scores))
    assert "ROC of the attack scores (log-log)" in page.text
    assert len(decode_images(page)) == 4
    # A perfectly separable attack: AUC 1 and every member found at 0 % FPR.
    assert "separable 1 100.00% 100.00% 100.00% 500 500" in page.text

    fig = roc_figure([("strong", roc_curve(strong, members))])
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"

    single = parse(render_html(synthetic_result(), tmp_path, audit_scores=scores["strong"]))
    assert "LOSS attack" in single.text


def test_roc_without_audit_block(tmp_path: Path) -> None:
    result = synthetic_result()
    result["audit"] = None
    members = np.array([True, False] * 20)
    scores = {"scores": np.linspace(0, 1, 40), "is_member": members}
    page = parse(render_html(result, tmp_path, audit_scores=scores))
    assert "Not audited" in page.text and "ROC of the attack scores" in page.text


@pytest.mark.parametrize(
    "scores",
    [
        {"scores": [0.1, 0.2]},
        {"scores": [0.1, 0.2], "is_member": [True, True]},
        {"scores": [0.1, float("nan")], "is_member": [True, False]},
        {"a": [1, 2]},
        {},
    ],
)
def test_bad_audit_scores_raise_one_line(tmp_path: Path, scores: dict[str, object]) -> None:
    with pytest.raises(DeniableError) as info:
        render_report(synthetic_result(), tmp_path, audit_scores=scores)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "report.html").exists()


def test_report_command_reads_result_json(tmp_path: Path) -> None:
    (tmp_path / "result.json").write_text(json.dumps(synthetic_result()))
    path = report_command(tmp_path)
    assert path == tmp_path / "report.html"
    assert "ε = 2.500" in parse(path.read_text(encoding="utf-8")).text
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "has no result.json"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"delta": 1e-5}', "no epsilon"),
        ('{"epsilon": "big", "delta": 1e-5}', "epsilon must be a number"),
    ],
)
def test_report_command_errors_are_one_line(
    tmp_path: Path, content: str | None, needle: str
) -> None:
    if content is not None:
        (tmp_path / "result.json").write_text(content)
    with pytest.raises(DeniableError) as info:
        report_command(tmp_path)
    message = str(info.value)
    assert needle in message and "\n" not in message


def test_missing_run_dir_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DeniableError, match="does not exist"):
        report_command(tmp_path / "nope")
    with pytest.raises(DeniableError, match="does not exist"):
        render_report(synthetic_result(), tmp_path / "nope")


def test_report_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "import deniable.report\n"
        "assert 'torch' not in sys.modules, 'the report imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_template_ships_inside_the_package() -> None:
    from importlib import resources

    assert resources.files("deniable.report").joinpath("templates/report.html").is_file()


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A real (tiny) run of the main job, audit included."""
    from deniable.config import TrainConfig
    from deniable.pipeline import run

    out = tmp_path_factory.mktemp("runs")
    config = TrainConfig.model_validate(
        {"model": "logreg", "epochs": 1, "batch_size": 64, "audit_canaries": 50, "out": out}
    )
    return run(config)


def test_report_of_a_real_run(real_run: dict[str, object]) -> None:
    run_dir = Path(str(real_run["run_dir"]))
    path = render_report(real_run, run_dir)
    page = parse(path.read_text(encoding="utf-8"))
    text = page.text
    eps, delta = real_run["epsilon"], real_run["delta"]
    assert isinstance(eps, float) and isinstance(delta, float)
    assert f"ε = {eps:.3f}" in text and f"δ = {delta:.3g}" in text
    assert "add/remove-one" in text and "privacy unit: example" in text
    for key in ("test_accuracy", "train_accuracy", "baseline_accuracy"):
        value = real_run[key]
        assert isinstance(value, float)
        assert f"{100 * value:.1f}%" in text, key
    audit = real_run["audit"]
    assert isinstance(audit, dict)
    assert f"{audit['epsilon_lower_bound']:.3f} at 95% confidence" in text
    assert len(decode_images(page)) == 3
    # The same report from result.json on disk (float TPR keys became strings there).
    again = parse(report_command(run_dir).read_text(encoding="utf-8"))
    assert again.text == text


def test_number_formats_doctest() -> None:
    import doctest

    from deniable.report import fmt

    assert doctest.testmod(fmt).failed == 0


def test_an_audit_without_power_is_called_so(tmp_path: Path) -> None:
    result = synthetic_result()
    audit = copy.deepcopy(result["audit"])
    assert isinstance(audit, dict)
    audit["private"]["bound"]["epsilon"] = 0.0
    audit["non_private"]["bound"]["epsilon"] = 0.0
    result["audit"] = audit
    text = parse(render_html(result, tmp_path)).text
    assert "the attack has little power" in text
