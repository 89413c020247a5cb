"""The command line as a user runs it: `python -m benchmark ...` in a subprocess."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmark.cli.main import main


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_list_shows_builtins_and_plugins():
    out = cli("list")
    assert out.returncode == 0
    for name in ("ecfp4", "minilm", "letter-counts", "scaffold", "text_rich", "memory_bank", "u2c"):
        assert name in out.stdout


def test_train_writes_the_documented_json(tiny_csv, tmp_path, capsys):
    output = tmp_path / "result.json"
    code = main(
        [
            "train",
            "--data",
            str(tiny_csv),
            "--split",
            "scaffold",
            "--mol-encoder",
            "ecfp4",
            "--text-encoder",
            "tfidf",
            "--epochs",
            "5",
            "--batch-size",
            "64",
            "--bootstrap",
            "100",
            "--fractions",
            "0.6",
            "0.2",
            "0.2",
            "--margin",
            "0.1",
            "--output",
            str(output),
            "--quiet",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "text_to_molecule" in printed and "recall@1" in printed
    result = json.loads(output.read_text())
    assert set(result["dataset"]) >= {"fingerprint", "n_pairs", "dropped"}
    assert set(result["split"]) >= {"name", "seed", "n_train", "n_val", "n_test", "checksum"}
    assert set(result["timing"]) >= {"encode_seconds", "train_seconds", "eval_seconds"}
    for mode in ("text_to_molecule", "molecule_to_text"):
        assert set(result["metrics"][mode]) >= {"recall@1", "recall@5", "recall@10", "mrr", "mean_rank", "median_rank"}
        assert set(result["metrics"][mode]["recall@1"]) >= {"value", "ci_low", "ci_high", "n"}
    assert set(result["metrics"]["text_to_molecule_grouped"]) >= {"recall@1", "mrr"}
    assert result["baseline"]["text_to_molecule"]["mrr"]["n"] == result["metrics"]["text_to_molecule"]["mrr"]["n"]
    gallery = result["galleries"]["text_to_molecule"]
    assert gallery["modality"] == "molecule" and gallery["size"] == len(gallery["items"]) == len(set(gallery["items"]))
    assert result["galleries"]["molecule_to_text"]["size"] == result["metrics"]["text_to_molecule"]["recall@1"]["n"]
    assert result["config"]["loss"]["margin"] == 0.1 and result["split"]["evaluated"] == "test"
    queries = pd.read_parquet(output.with_suffix(".queries.parquet"))
    assert set(queries["system"]) == {"bridge", "untrained"} and (queries["rank"] >= 1).all()


def test_bring_your_own_without_groups_skips_grouped_with_a_note(tmp_path, tiny_frame, capsys):
    path = tmp_path / "byo.csv"
    tiny_frame.rename(columns={"canonical_smiles": "SMI", "mechanism_of_action": "desc"})[["SMI", "desc"]].to_csv(
        path, index=False
    )
    code = main(
        [
            "train",
            "--data",
            str(path),
            "--smiles-column",
            "SMI",
            "--text-column",
            "desc",
            "--text-field",
            "mechanism",
            "--text-encoder",
            "letter-counts",
            "--epochs",
            "3",
            "--bootstrap",
            "50",
            "--fractions",
            "0.6",
            "0.2",
            "0.2",
            "--quiet",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "grouped (within-target) retrieval skipped" in out and "text_to_molecule_grouped" not in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--mol-encoder", "ecf4"], "Did you mean 'ecfp4'"),
        (["--split", "scafold"], "Did you mean 'scaffold'"),
        (["--temperature", "-1"], "loss.temperature"),
        (["--data", "/nonexistent.csv"], "does not exist"),
        (["--text-encoder", "ecfp4"], "not text"),
        (["--smiles-column", "x"], "both --smiles-column and --text-column"),
    ],
)
def test_mistakes_give_one_clear_line_and_no_traceback(args, message, tiny_csv, capsys):
    """In-process (`main`, what the console command calls); the real console is the test below."""
    data = [] if "--data" in args else ["--data", str(tiny_csv)]
    code = main(["train", *data, "--epochs", "1", "--bootstrap", "10", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err and err.count("error:") == 1


@pytest.mark.parametrize("debug", [False, True])
def test_the_console_prints_one_line_and_the_traceback_only_with_debug(debug, tiny_csv):
    out = cli(*(["--debug"] if debug else []), "train", "--data", str(tiny_csv), "--mol-encoder", "ecf4")
    assert out.returncode == 2 and "Did you mean 'ecfp4'" in out.stderr
    assert ("Traceback" in out.stderr) is debug
    if not debug:
        assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("error: ")


@pytest.mark.parametrize(
    "flags,named",
    [
        (["--num-samples", "0"], "--num-samples 0"),
        (["--num-samples", "-1"], "--num-samples -1"),
        (["--cpus-per-trial", "0"], "--cpus-per-trial 0.0"),
        (["--max-concurrent", "0"], "--max-concurrent 0"),
        (["--time-budget", "0"], "--time-budget 0.0"),
        (["--max-failures", "-2"], "--max-failures -2"),
    ],
)
def test_run_options_out_of_range_are_refused_naming_the_flag(flags, named, tmp_path, capsys):
    code = main(["run", "--output", str(tmp_path / "out"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", *flags])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid option:") and named in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.db").exists()  # nothing started


@pytest.mark.slow
def test_list_shows_protocols_and_systems():
    out = cli("list", "tasks")
    assert "cv 5x5" in out.stdout and "holdout" in out.stdout
    systems = cli("list", "systems").stdout
    for name in ("untrained-heads", "paper-defaults", "tuned-linear", "second-order"):
        assert name in systems


def test_list_tasks_is_an_aligned_table_and_json_for_scripts(capsys):
    assert main(["list", "tasks", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["tasks"]
    by_name = {row["name"]: row for row in rows}
    assert by_name["prospective-global"]["split"] == "prospective"
    assert by_name["prospective-global"]["retrieval"] == "global"
    assert by_name["paper-pair-global"]["leaky"] is True and by_name["scaffold-global"]["leaky"] is False
    assert main(["list", "tasks"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "prospective-global" in line]
    assert len(lines) == 1 and "prospectiveglobal" not in lines[0]
    cells = [cell.strip() for cell in lines[0].split("│") if cell.strip()]
    assert cells[:4] == ["prospective-global", "prospective", "global", "holdout"]


def test_list_rejects_an_unknown_kind_with_a_suggestion(capsys):
    assert main(["list", "encoder"]) == 2
    assert "did you mean 'encoders'" in capsys.readouterr().err.lower()


@pytest.mark.parametrize(
    "uri,message",
    [
        ("sqlit:///{tmp}/x.db", "unknown scheme 'sqlit'. Did you mean 'sqlite'?"),
        ("sqlite://x.db", "three slashes before a relative path and four before an absolute one"),
        ("file://{tmp}/store", "file store is not supported"),
        ("{tmp}/x.db", "is a plain path, not a URI; for a database at that path use sqlite:///"),
        ("sqlite:///{tmp}", "names a folder"),
    ],
)
def test_tracking_uri_typos_are_explained_before_anything_starts(uri, message, tmp_path, capsys):
    uri = uri.format(tmp=tmp_path)
    for command in (
        ["run", "--output", str(tmp_path / "out"), "--tracking-uri", uri],
        ["report", "--tracking-uri", uri, "--out", str(tmp_path / "reports")],
    ):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: tracking URI") and message in err and "accepted: sqlite:///" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, output or report folder made


@pytest.mark.parametrize("folder", ["{tmp}/a-file/cache", "/sys/fs"])
def test_an_unwritable_cache_folder_is_refused_naming_it(folder, tiny_csv, tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    folder = folder.format(tmp=tmp_path)
    if folder == "/sys/fs":  # an existing folder on a read-only file system (root may write anywhere else)
        try:
            (Path(folder) / "embeddings").mkdir()
        except OSError:
            pass
        else:
            (Path(folder) / "embeddings").rmdir()
            pytest.skip("/sys/fs is writable here")
    assert main(["train", "--data", str(tiny_csv), "--cache-dir", folder, "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert f"the embedding cache folder {folder} cannot be written" in err and "--cache-dir" in err
    assert (
        main(
            [
                "run",
                "--output",
                str(tmp_path / "out"),
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'm.db'}",
                "--cache-dir",
                folder,
            ]
        )
        == 2
    )
    assert "cannot be written" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.db").exists()


def test_a_search_space_optuna_cannot_sample_fails_before_any_run_starts(tmp_path, tiny_csv, capsys, monkeypatch):
    """log: true with a step: one error line naming the file and field; no store, no MLflow run left RUNNING."""
    import yaml
    from suite_helpers import TINY_SPACE, write_suite

    space = {
        **TINY_SPACE,
        "parameters": {"optim/lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True, "step": 1e-4}},
    }
    # task names are global (a registry): this suite's own names, not the tiny suite's
    folder = write_suite(tmp_path / "tasks", tiny_csv, space=space, name="badspace", prefix="badspace")
    monkeypatch.setenv("BENCHMARK_TASKS_DIR", str(folder))
    code = main(
        [
            "run",
            "--suite",
            "badspace",
            "--output",
            str(tmp_path / "out"),
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'm.db'}",
            "--offline",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "log scale with a step" in err and "badspace-space" in err and "optim/lr" in err
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "out").exists()
    assert yaml.safe_load((tmp_path / "badspace-space.yaml").read_text())["parameters"]["optim/lr"]["log"] is True


def test_out_of_range_numbers_are_refused_at_parsing(capsys):
    """`--bootstrap 0` used to fail with an IndexError after the whole training."""
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--bootstrap", "0"])
    assert exit_.value.code == 2
    assert "--bootstrap: must be at least 1, got 0" in capsys.readouterr().err


def test_report_out_naming_a_file_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "mlflow.db").write_bytes(b"")
    taken = tmp_path / "leaderboard.md"
    taken.write_text("mine")
    code = main(["report", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--out", str(taken)])
    err = capsys.readouterr().err
    assert code == 2 and "is a file" in err and "Traceback" not in err
    assert taken.read_text() == "mine"


@pytest.mark.parametrize("verb", ["run", "report"])
def test_a_corrupt_mlflow_store_is_one_clear_line(tmp_path, capsys, verb):
    store = tmp_path / "mlflow.db"
    store.write_bytes(b"\x00garbage" * 512)
    extra = ["--suite", "quick", "--output", str(tmp_path / "out"), "--offline"] if verb == "run" else []
    code = main([verb, "--tracking-uri", f"sqlite:///{store}", *extra])
    err = capsys.readouterr().err
    assert code == 2 and f"the MLflow store {store} is not a readable database" in err and "Traceback" not in err


def test_a_corrupt_optuna_store_stops_a_resume_with_one_clear_line(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run_state.json").write_text('{"run_uid": "abc123", "suite": "quick"}')
    (out / "optuna.db").write_bytes(b"")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(["run", "--suite", "quick", "--tracking-uri", uri, "--output", str(out), "--offline", "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and f"the Optuna studies {out / 'optuna.db'} is empty" in err and "without --resume" in err


def test_report_against_a_server_that_does_not_answer_fails_at_once(capsys):
    """It used to retry for about four minutes and end in a traceback."""
    started = time.monotonic()
    code = main(["report", "--tracking-uri", "http://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 2 and "MLflow tracking server http://127.0.0.1:1 is unreachable" in err
    assert time.monotonic() - started < 30


def test_run_against_an_address_where_no_ray_answers_fails_at_once(tmp_path, capsys):
    """It used to hang for minutes (and ignore SIGTERM meanwhile)."""
    started = time.monotonic()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(["run", "--suite", "quick", "--address", "127.0.0.1:1", "--tracking-uri", uri,
                 "--output", str(tmp_path / "out"), "--offline"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "no Ray cluster answers at 127.0.0.1:1" in err and "Traceback" not in err
    assert time.monotonic() - started < 60


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["ecfp4", "gin"])
def test_train_gives_the_same_numbers_whatever_omp_num_threads_the_shell_had(encoder, tiny_csv, tmp_path):
    """`train` pins torch's threads (`--threads`, default: the cores it may use), so the shell's OMP_NUM_THREADS
    changes nothing; the graph encoder's parallel scatter sums are where an unpinned count shows."""
    import os

    runs = {}
    for omp in ("1", "3"):
        out = tmp_path / f"{encoder}-{omp}.json"
        args = ["train", "--data", str(tiny_csv), "--mol-encoder", encoder, "--text-encoder", "tfidf", "--epochs"]
        args += ["3", "--batch-size", "32", "--bootstrap", "20", "--output", str(out), "--quiet"]
        done = cli(*args, env={**os.environ, "OMP_NUM_THREADS": omp})
        assert done.returncode == 0, done.stderr[-2000:]
        runs[omp] = json.loads(out.read_text())
    assert runs["1"]["threads"] == runs["3"]["threads"] >= 1  # the cores, not the shell's setting
    assert runs["1"]["metrics"] == runs["3"]["metrics"]
    assert [h["loss"] for h in runs["1"]["history"]] == [h["loss"] for h in runs["3"]["history"]]
    if encoder == "gin":  # graph featurisation is timed like encoding
        molecule = runs["1"]["encoders"]["molecule"]
        assert (
            molecule["featurise_seconds"] > 0 and runs["1"]["timing"]["encode_seconds"] >= molecule["featurise_seconds"]
        )


def test_the_dataset_list_counts_texts_the_default_encoder_cuts(tiny_frame, tmp_path):
    from benchmark.cli.listing import texts_cut
    from benchmark.data import load_dataset
    from benchmark.encoders import build_encoder

    frame = tiny_frame.copy()
    frame.loc[frame.index[0], "mechanism_of_action"] = "inhibitor of a long kinase " * 200
    frame.to_csv(tmp_path / "long.csv", index=False)
    assert texts_cut(load_dataset(tmp_path / "long.csv"), build_encoder("minilm")) == 1
    assert texts_cut(load_dataset(tmp_path / "long.csv"), build_encoder("wordllama")) == 0


def test_list_keeps_each_dataset_row_until_its_file_changes(tiny_frame, tmp_path, monkeypatch, capsys):
    """A dataset's row (RDKit and a tokenizer over the whole dataset) is computed once per file, then read back;
    another file under the same name gets its own row."""
    from benchmark.cli import listing
    from benchmark.data import load_dataset

    def rows() -> dict[str, dict]:
        assert main(["list", "datasets", "--json"]) == 0
        return {row["name"]: row for row in json.loads(capsys.readouterr().out)["datasets"]}

    real = rows()
    read = []
    monkeypatch.setattr(listing, "load_dataset", lambda path: read.append(Path(path).name) or load_dataset(path))
    assert rows() == real and read == []  # both rows from the cache
    tiny_frame.to_csv(tmp_path / "pairs.csv", index=False)
    monkeypatch.setenv("BENCHMARK_DATA", str(tmp_path / "pairs.csv"))  # the default dataset, read from elsewhere
    changed = rows()
    assert read == ["pairs.csv"] and changed["clinical"] == real["clinical"]
    assert changed["approved"]["pairs"] == load_dataset(tmp_path / "pairs.csv").n_pairs != real["approved"]["pairs"]


def test_an_interrupted_run_ignores_further_stop_signals_while_it_exits(monkeypatch, capsys):
    """A burst of Ctrl-C: the first stops the run; one that came during Ray's shutdown at exit (an atexit hook) used
    to end the process by SIGINT (exit -2) with a traceback, instead of exit 130."""
    import signal

    from benchmark.cli import run as run_verb
    from benchmark.run.interrupts import Interrupted

    def stopped(options, progress=None):
        raise Interrupted("interrupted (test); resume with: ...")

    monkeypatch.setattr(run_verb, "run_suite", stopped)
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert main(["run", "--suite", "quick", "--offline"]) == 130
        assert signal.getsignal(signal.SIGINT) == signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert "resume with" in capsys.readouterr().err


def test_printed_mlflow_links_follow_the_ui_address_the_user_gives(monkeypatch):
    from benchmark.cli.run import UI_ENV, ui_address, ui_command
    from benchmark.run.options import RunOptions

    monkeypatch.delenv(UI_ENV, raising=False)
    assert ui_address(RunOptions()) == "http://127.0.0.1:5000"
    assert ui_address(RunOptions(tracking_uri="http://10.0.0.5:8080/")) == "http://10.0.0.5:8080"
    monkeypatch.setenv(UI_ENV, "http://127.0.0.1:5001/")
    assert ui_address(RunOptions()) == "http://127.0.0.1:5001"
    assert ui_address(RunOptions(mlflow_ui="http://localhost:7000")) == "http://localhost:7000"
    assert ui_command("sqlite:///m.db").startswith("MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui ")
