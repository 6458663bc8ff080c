"""`lvmjax fit lda` and `lvmjax fit prodlda`, and the commands after them: topics recovered from a text file,
the evaluation's numbers against the Python API, the saved vocabulary, the figures, and bad input (one line,
nothing written)."""

import json

import jax
import numpy as np
import pytest
import scipy.sparse

from lvmjax import app, cli, prodlda, text
from lvmjax.models import lda, topics

TOPIC_WORDS = {  # three themes of a synthetic corpus, ten words each
    "sea": "ocean wave ship sail harbor tide boat anchor coast fish".split(),
    "space": "star planet orbit rocket comet galaxy moon launch telescope nebula".split(),
    "food": "bread cheese soup pepper garlic onion butter flour salt oven".split(),
}


def write_corpus(path, num_docs=150, length=40, seed=0):
    """Documents each mostly of one theme, written one per line; returns the themes' names per document."""
    rng = np.random.default_rng(seed)
    names = list(TOPIC_WORDS)
    themes = rng.integers(0, 3, num_docs)
    lines = []
    for theme in themes:
        mixture = np.full(3, 0.1)
        mixture[theme] = 0.8
        words = [rng.choice(TOPIC_WORDS[names[rng.choice(3, p=mixture)]]) for _ in range(length)]
        lines.append(" ".join(words) + ".")
    path.write_text("\n".join(lines) + "\n")
    return themes


def run_cli(capsys, *argv):
    code = cli.main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "themes.txt"
    write_corpus(path)
    return path


ALL_WORDS = ["--max-df", "1"]  # each theme's words are in most documents of their theme and many others
RUNS = {
    "lda-cavi": ["lda", "--method", "cavi", "--max-iter", "60"],
    "lda-svi": ["lda", "--method", "svi", "--max-iter", "60", "--batch-size", "32"],
    "prodlda": ["prodlda", "--epochs", "300", "--batch-size", "32", "--hidden", "100,100", "--lr", "2e-3"],
}


@pytest.fixture(scope="module")
def runs(corpus_file, tmp_path_factory):
    """Each of RUNS fitted to the corpus, 3 topics: name -> run directory."""
    root = tmp_path_factory.mktemp("topic-models")
    for name, (model, *options) in RUNS.items():
        argv = ["fit", model, "--data", corpus_file, "--topics", "3", "--out", root / name, "--quiet", *ALL_WORDS]
        argv += options
        assert cli.main([str(arg) for arg in argv]) == 0
    return {name: root / name for name in RUNS}


@pytest.fixture(scope="module")
def lda_run(runs):
    return runs["lda-cavi"]


def _themes_of(words):
    """The theme that most of a topic's top words belong to, and how many do."""
    counts = {name: sum(word in theme for word in words) for name, theme in TOPIC_WORDS.items()}
    best = max(counts, key=counts.get)
    return best, counts[best]


@pytest.mark.parametrize("name", RUNS)
def test_each_topic_is_one_theme(name, runs, capsys):
    run_dir = runs[name]
    code, out, _ = run_cli(capsys, "evaluate", run_dir, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["num_topics"] == 3 and report["vocabulary_size"] == 30
    themes = [_themes_of(words.split()) for words in report["top_words"]]
    assert {theme for theme, _ in themes} == set(TOPIC_WORDS)  # every theme found once
    # LDA's ten top words are its theme's; ProdLDA, slower to settle on 120 documents, has 9 of 10 at 300 epochs.
    assert all(count >= (10 if name.startswith("lda") else 8) for _, count in themes), report["top_words"]
    assert report["coherence_npmi"] > 0.2
    # Perplexities: below the 30 words of uniform guessing, above the ~10 of knowing each document's theme.
    assert 8 < report["test_completion_perplexity"] < 30
    assert 8 < report["test_perplexity"] < 30
    assert report["test_nll"] is None and report["nll_estimator"] is None
    # LDA's scikit-learn perplexity also charges KL(q(β) ‖ p(β)) >= 0 to the test words; ProdLDA has no such term.
    if name.startswith("lda"):
        assert report["test_document_perplexity"] < report["test_perplexity"]
    else:  # the paper's perplexity, as prodlda.perplexity computes it with evaluate's key and 16 samples
        run = app.load_run(run_dir)
        params = prodlda.Params(**run.params)
        expected = float(prodlda.perplexity(jax.random.key(0), params, app.load_run_data(run, run_dir).test, 16))
        assert report["test_perplexity"] == report["test_document_perplexity"]
        assert report["test_perplexity"] == pytest.approx(expected, rel=1e-5)


def test_the_evaluation_is_the_python_apis(lda_run, corpus_file, capsys):
    run = app.load_run(lda_run)
    dataset = app.load_run_data(run, lda_run)
    params = lda.Params(**run.params)
    _, out, _ = run_cli(capsys, "evaluate", lda_run, "--json")
    report = json.loads(out)
    assert report["test_perplexity"] == pytest.approx(float(lda.perplexity(params, dataset.test)), rel=1e-5)
    coherence = topics.npmi_coherence(lda.topic_word(params), dataset.test, 10)
    assert report["coherence_npmi_per_topic"] == pytest.approx(coherence.tolist(), rel=1e-6)
    observed, held_out = topics.completion_split(dataset.test, seed=0)
    expected = topics.completion_perplexity(lda.word_probabilities(params, observed), held_out)
    assert report["test_completion_perplexity"] == pytest.approx(expected, rel=1e-5)
    assert (lda_run / "vocabulary.txt").read_text().split() == list(dataset.vocabulary)
    config = json.loads((lda_run / "config.json").read_text())
    assert config["topics"] == 3 and config["min_df"] == text.MIN_DF


@pytest.mark.parametrize("name", RUNS)
def test_the_training_objective_rises(name, runs):
    history = [json.loads(line)["train_objective"] for line in (runs[name] / "metrics.jsonl").read_text().splitlines()]
    if name == "lda-cavi":  # coordinate ascent: never down, up to float32 rounding of a per-word ELBO
        assert np.all(np.diff(history) > -1e-5 * np.abs(history[1:]))
    assert history[-1] > history[0] + 0.1


@pytest.mark.parametrize("name", ["lda-cavi", "prodlda"])
def test_plot_draws_the_topics_and_the_document_proportions(name, runs, capsys):
    run_dir = runs[name]
    code, out, _ = run_cli(capsys, "plot", run_dir)
    assert code == 0
    written = {line.rsplit("/", 1)[-1] for line in out.split()}
    assert {"training.png", "topics.png", "document_topics.png"} <= written


def test_sample_and_impute_say_what_a_topic_model_does_instead(lda_run, capsys):
    code, _, err = run_cli(capsys, "sample", lda_run)
    assert code == 2 and "no sampler" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "impute", lda_run)
    assert code == 2 and "test_completion_perplexity" in err


def test_a_changed_corpus_is_refused_at_evaluation(corpus_file, tmp_path, capsys):
    data = tmp_path / "corpus.txt"
    data.write_text(corpus_file.read_text())
    run_dir = tmp_path / "run"
    assert (
        cli.main(
            [
                "fit",
                "lda",
                "--data",
                str(data),
                "--topics",
                "3",
                "--max-iter",
                "5",
                "--out",
                str(run_dir),
                "--quiet",
                *ALL_WORDS,
            ]
        )
        == 0
    )
    lines = data.read_text().splitlines()
    data.write_text("\n".join(line.replace("ocean", "sea") for line in lines) + "\n")
    code, out, err = run_cli(capsys, "evaluate", run_dir)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "not the one" in err and "'ocean'" in err, err


def _bad_counts(tmp_path, counts):
    path = tmp_path / "counts.npz"
    scipy.sparse.save_npz(path, scipy.sparse.csr_matrix(counts))
    return path


@pytest.mark.parametrize(
    "make, options, message",
    [
        (lambda tmp: _bad_counts(tmp, -np.ones((10, 5))), [], "negative"),
        (lambda tmp: _bad_counts(tmp, np.full((10, 5), 0.5)), [], "whole numbers"),
        (lambda tmp: _bad_counts(tmp, np.vstack([np.ones((9, 5)), np.zeros((1, 5))])), [], "no words"),
        (lambda tmp: _bad_counts(tmp, np.ones((10, 5))), ["--topics", "6"], "more topics than the 5 words"),
        (lambda tmp: (tmp / "junk.npz").write_bytes(b"junk") and tmp / "junk.npz", [], "could not read"),
        (lambda tmp: (tmp / "one.txt").write_text("just one document\n") and tmp / "one.txt", [], "too few"),
        (lambda tmp: tmp / "absent.txt", [], "does not exist"),
    ],
)
@pytest.mark.parametrize("model", ["lda", "prodlda"])
def test_bad_input_gets_one_line_and_nothing_is_written(tmp_path, capsys, make, options, message, model):
    data = make(tmp_path)
    run_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "fit", model, "--data", data, "--out", run_dir, "--quiet", *options)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert not run_dir.exists()


def test_the_vocabulary_options_are_checked(corpus_file, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, _, err = run_cli(capsys, "fit", "lda", "--data", corpus_file, "--min-df", "1000", "--out", run_dir)
    assert code == 2 and "no word occurs in at least 1000" in err and not run_dir.exists()
    code, _, err = run_cli(capsys, "fit", "lda", "--max-df", "1.5", "--out", run_dir)
    assert code == 2 and "--max-df" in err and not run_dir.exists()
