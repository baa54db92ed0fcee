"""The ``numbce`` command, run as users run it: a subprocess, its output and exit code."""

import json
import os
import subprocess
import sys
import sysconfig

import pytest

import numbce

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ENVIRONMENT = dict(
    os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(numbce.__file__))
)
"""The subprocesses import the numbce this test imported."""


def _numbce(*args, cwd, before=""):
    """Run ``numbce.cli.main(args)`` in a new Python in ``cwd`` (after the Python statements
    ``before``, e.g. to hide a module); return the CompletedProcess."""
    code = f"{before}\nfrom numbce.cli import main\nmain({list(args)!r})"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        check=False,
        capture_output=True,
        text=True,
        env=ENVIRONMENT,
    )


def test_train_command(tmp_path):
    done = _numbce(
        "train", "--epochs", "3", "--seed", "1", "--json", "history.json", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "3 epochs, batch 32, Adam lr 0.001, seed 1" in done.stdout
    assert "with the final weights:" in done.stdout
    assert "test   loss" in done.stdout and "training time" in done.stdout
    assert "3/3" in done.stderr  # the progress bar
    assert (tmp_path / "training_curves.png").read_bytes()[:8] == PNG_SIGNATURE
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["tutorial"] == "circles" and len(saved["history"]["val_loss"]) == 3
    assert 0 <= saved["test"]["accuracy"] <= 1


@pytest.mark.parametrize(
    ("name", "signature"), [("curves.pdf", b"%PDF"), ("curves.svg", b"<?xml")]
)
def test_plot_takes_the_format_of_its_suffix(tmp_path, name, signature):
    done = _numbce("train", "--epochs", "1", "--plot", name, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / name).read_bytes().startswith(signature)


LINUX_ONLY = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="/proc: a folder where no file can be made",
)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "-3"], "argument --epochs: must be at least 1, got -3"),
        (["--epochs", "two"], "argument --epochs: not an integer: 'two'"),
        (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
        (["--lr", "-1"], "argument --lr: must be a finite number > 0, got -1"),
        (["--lr", "nan"], "argument --lr: must be a finite number > 0, got nan"),
        (["--seed", "-1"], "argument --seed: must be at least 0, got -1"),
        (["--plot", "missing/c.png"], "argument --plot: no folder 'missing'"),
        (["--json", "missing/h.json"], "argument --json: no folder 'missing'"),
        (["--plot", "."], "argument --plot: '.' is a folder, not a file"),
        (["--json", "."], "argument --json: '.' is a folder, not a file"),
        pytest.param(
            ["--plot", "/proc/c.png"],
            "argument --plot: cannot write '/proc/c.png': No such file or directory",
            marks=LINUX_ONLY,
        ),
        pytest.param(
            ["--json", "/proc/h.json"],
            "argument --json: cannot write '/proc/h.json': No such file or directory",
            marks=LINUX_ONLY,
        ),
        (["--plot", "curves.xyz"], "argument --plot: 'curves.xyz' must end in one of"),
        (["--plot", "curves"], "argument --plot: 'curves' must end in one of"),
        (["mnist"], "invalid choice: 'mnist'"),
    ],
)
def test_bad_options_are_usage_errors_before_training(tmp_path, args, message):
    done = _numbce("train", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == "" and list(tmp_path.iterdir()) == []


def test_version_and_plain_help(tmp_path):
    done = _numbce("--version", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"numbce {numbce.__version__}\n")
    for args in (["--help"], ["train", "--help"]):
        text = _numbce(*args, cwd=tmp_path).stdout
        assert "usage: numbce" in text
        assert "``" not in text and ":mod:" not in text


@pytest.mark.parametrize("missing", ["matplotlib", "tqdm", "sklearn"])
def test_without_the_nn_extra_train_says_what_to_install(tmp_path, missing):
    done = _numbce(
        "train", cwd=tmp_path, before=f"import sys; sys.modules[{missing!r}] = None"
    )
    assert done.returncode == 1
    assert f"needs {missing!r}, part of numbce's 'nn' extra" in done.stderr
    assert "pip install 'numbce[nn]'" in done.stderr and "Traceback" not in done.stderr


def test_importing_numbce_nn_without_tqdm_names_the_extra():
    code = "import sys; sys.modules['tqdm'] = None; import numbce.nn"
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env=ENVIRONMENT,
    )
    assert "numbce.nn needs 'tqdm', part of numbce's 'nn' extra" in done.stderr
    assert "pip install 'numbce[nn]'" in done.stderr


def test_the_console_script_runs_the_same_main():
    script = os.path.join(sysconfig.get_path("scripts"), "numbce")
    done = subprocess.run(
        [script, "train", "--batch-size", "0"],
        check=False,
        capture_output=True,
        text=True,
        env=ENVIRONMENT,
    )
    assert done.returncode == 2
    assert "argument --batch-size: must be at least 1, got 0" in done.stderr


def test_train_multilabel_prints_per_label_figures(tmp_path):
    done = _numbce(
        "train", "multilabel", "--epochs", "5", "--json", "h.json", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "5 epochs, batch 32, Adam lr 0.001, seed 0" in done.stdout
    assert "accuracy: the subset accuracy" in done.stdout
    table = done.stdout.split("Per label, on the test set:\n")[1].splitlines()
    assert table[0].split() == [
        "label", "train", "frequency", "pos_weight", "precision", "recall", "F1"
    ]  # fmt: skip
    rows = [line.split() for line in table[1:6]]
    assert [row[0] for row in rows] == ["0", "1", "2", "3", "4"]
    for _, frequency, pos_weight, *scores in rows:
        assert float(pos_weight) == pytest.approx(
            (1 - float(frequency)) / float(frequency), abs=0.02
        )
        assert all(0 <= float(score) <= 1 for score in scores)
    saved = json.loads((tmp_path / "h.json").read_text())
    assert set(saved["test"]) == {"loss", "accuracy", "label_accuracy"}
    assert (tmp_path / "training_curves.png").read_bytes()[:8] == PNG_SIGNATURE
