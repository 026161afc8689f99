"""`deniable recipes`: named settings that reproduce published results, runnable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from deniable.data import load_dataset
from deniable.features.pipeline import PrivateNormalization
from deniable.recipes import RECIPES, get_recipe, recipe_config, run_scatternet, scatternet_config

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "RESULTS.md"


def test_list_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["recipes", "--json"], capsys)
    assert code == 0, err
    listed = {r["name"]: r for r in json.loads(out)}
    assert listed["mnist-scatternet"]["published"] == {"3": 0.987}
    assert listed["fashion-mnist-scatternet"]["published"] == {"3": 0.897}
    code, out, err = run_cli(["recipes", "mnist-tanh-cnn"], capsys)
    assert code == 0 and json.loads(out)["settings"]["model"] == "papernot-cnn"
    code, _, err = run_cli(["recipes", "cifar-wrn"], capsys)
    assert code != 0 and "unknown recipe" in err and len(err.strip().splitlines()) == 1


def test_measured_figures_are_the_ones_recorded_in_results() -> None:
    """Every accuracy a recipe claims to have measured appears in benchmarks/RESULTS.md."""
    text = RESULTS.read_text()
    for recipe in RECIPES.values():
        if recipe.dataset == "digits":
            continue
        for accuracy in recipe.measured.values():
            assert f"{accuracy:.2%}" in text, (recipe.name, accuracy)


def test_run_recipes_are_valid_configs_with_overrides(tmp_path: Path) -> None:
    config = recipe_config(get_recipe("mnist-tanh-cnn"), epsilon=1.0, data_dir=tmp_path)
    assert config.model == "papernot-cnn" and config.target_epsilon == 1.0
    assert config.max_grad_norm == 0.1 and config.batch_size == 512 and config.momentum == 0.0
    with pytest.raises(Exception, match="scatternet recipe"):
        recipe_config(get_recipe("mnist-scatternet"))


def test_run_a_recipe_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["recipes", "digits-mlp", "--run", "--epochs", "1", "--epsilon", "2"]
    code, out, err = run_cli([*args, "--out", str(tmp_path), "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["epsilon"] <= 2.0 and result["config"]["model"] == "mlp"
    assert (Path(result["run_dir"]) / "result.json").exists()


def test_scatternet_recipe_composes_the_private_normalisation(tmp_path: Path) -> None:
    """The MNIST ScatterNet recipe's machinery on the embedded digits: the private
    normalisation's ε is part of the total, which stays at the target."""
    config = scatternet_config(get_recipe("mnist-scatternet"), epsilon=2.0, epochs=1.0)
    assert isinstance(config.normalization, PrivateNormalization)
    result = run_scatternet(load_dataset("digits"), config, tmp_path / "run")
    assert result["epsilon"] == pytest.approx(2.0, rel=1e-3)
    assert result["epsilon"] <= 2.0 * (1 + 1e-9)
    assert 0 < result["epsilon_normalization"] < result["epsilon"]  # type: ignore[operator]
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["test_accuracy"] == result["test_accuracy"]
    assert saved["config"]["normalization"]["mean_clip"] == 0.30
