"""The tour: one quick run, its files, the identities its numbers must satisfy, and refused input."""

import base64
import json
import math
import os
import re
import struct
import subprocess
import sys

import pytest

from lvmjax import cli, tour
from lvmjax.app.rundir import write_dir
from lvmjax.errors import DataError, RunError
from lvmjax.tour import markdown
from lvmjax.tour.run import _check_out_dir

pytestmark = pytest.mark.standard_promotion

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NEURAL = ("vae", "iwae", "svi", tour.SEMI_AMORTIZED)

# The quick tour trains for a few epochs only: most of its time goes into compiling some 140
# XLA programs, so `lvmjax tour --quick` compiles without LLVM's expensive passes, which halves
# that. The flags must be set before JAX starts its backend, so the tour runs in a process of
# its own with them, warnings as errors as under pytest.
FAST_COMPILE = cli.QUICK_XLA_FLAGS
RUNNER = """
import json, sys
from lvmjax import tour
calls = []
metrics = tour.run_tour(sys.argv[1], quick=True, progress=lambda *args: calls.append(args))
with open(sys.argv[2], "w") as file:
    json.dump({"returned": metrics, "progress": calls}, file)
"""


@pytest.fixture(scope="module")
def quick_tour(tmp_path_factory):
    """The quick tour, run once for the module: its directory, what run_tour returned, its progress calls."""
    root = tmp_path_factory.mktemp("tour")
    out_dir, record = root / "report", root / "record.json"
    environment = os.environ | {"XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()}
    command = [
        sys.executable,
        "-W",
        "error",
        "-W",
        "ignore:jax.core.pytype_aval_mappings is deprecated:DeprecationWarning",  # as in pyproject
        "-c",
        RUNNER,
        str(out_dir),
        str(record),
    ]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-5000:]
    recorded = json.loads(record.read_text())
    return out_dir, recorded["returned"], [tuple(call) for call in recorded["progress"]]


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature and the chunk's name."""
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def test_every_file_is_written_and_every_figure_is_a_png(quick_tour):
    out_dir, metrics, _ = quick_tour
    assert {path.name for path in out_dir.iterdir()} == {"report.html", "report.md", "metrics.json", "figures"}
    pngs = {path.name for path in (out_dir / "figures").iterdir()}
    assert pngs == {f"{name}.png" for name in tour.FIGURES}
    assert metrics["figures"] == {name: f"figures/{name}.png" for name in tour.FIGURES}
    for name in pngs:
        width, height = png_size((out_dir / "figures" / name).read_bytes())
        assert width > 100 and height > 50
    assert not list(out_dir.parent.glob(".report.partial-*"))  # the staging directory was renamed


def test_metrics_json_is_what_run_tour_returned_and_covers_every_model(quick_tour):
    out_dir, metrics, _ = quick_tour
    stored = json.loads((out_dir / "metrics.json").read_text())
    assert stored == metrics
    assert set(stored["models"]) == {*tour.TOUR_MODELS, tour.SEMI_AMORTIZED, tour.SEQUENCE_MODEL}
    for model, entry in stored["models"].items():
        kinds = {"gmm": "dequantized", "fa": "dequantized", tour.SEQUENCE_MODEL: "nile"}
        assert entry["data"] == kinds.get(model, "binary")
        assert finite(entry["train_seconds"]) and entry["train_seconds"] > 0
        if model == "ae":
            assert entry["test_elbo"] is None and entry["test_nll"] is None
            assert finite(entry["test_reconstruction_nll"]) and entry["test_reconstruction_nll"] > 0
        else:
            assert all(finite(entry[key]) for key in ("test_elbo", "test_nll", "test_nll_stderr"))
    for model in NEURAL:
        assert stored["models"][model]["num_samples"] == tour.QUICK.nll_samples
        assert stored["models"][model]["test_nll_stderr"] > 0
    assert stored["tour"]["quick"] is True and stored["tour"]["num_test"] == 297
    # The vae's row and the vae-flow row (an IAF posterior, a mixture prior) report how they use their latents:
    # the KL per dimension only where it has a closed form, I(x; z) only where q has a density at any z.
    plain, rich = stored["models"]["vae"]["diagnostics"], stored["models"][tour.RICH_VAE]["diagnostics"]
    assert len(plain["kl_per_dimension"]) == 16 and rich["kl_per_dimension"] is None
    assert 0 < plain["mutual_information"] <= plain["mutual_information_upper_bound"] == pytest.approx(math.log(297))
    assert rich["mutual_information"] is None and rich["rate"] > 0 and 0 <= rich["active_units"] <= 16
    assert stored["settings"]["configs"][tour.RICH_VAE]["posterior"] == "iaf"
    assert set(stored["stages"]) >= {
        "load data",
        "evaluate",
        "estimators versus K",
        "figures",
        "report",
        *(f"fit {model}" for model in tour.TOUR_MODELS),
    }
    assert all(finite(seconds) and seconds >= 0 for seconds in stored["stages"].values())
    machine = stored["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["jax"] and machine["backend"]


def test_the_nile_story_is_the_hmm_of_its_run(quick_tour):
    """The change point and the held-out score of the tour's HMM, as `lvmjax fit hmm --data nile` finds them."""
    _, metrics, _ = quick_tour
    story, entry = metrics["sequences"], metrics["models"][tour.SEQUENCE_MODEL]
    assert story["test_nll"] == entry["test_nll"] and entry["num_test"] == story["num_test_years"] == 20
    assert entry["test_elbo"] == -entry["test_nll"] and entry["test_nll_stderr"] == 0.0
    assert story["change_years"] and all(1871 < year <= 1970 for year in story["change_years"])
    assert len(story["regime_means"]) == len(story["change_years"]) + 1
    # One state is the two-state model with both states alike: Baum–Welch's fit can only score better on the
    # training years, which BIC's penalty may outweigh; here the drop near 1898 is large enough that it does not.
    assert story["bic"] < story["baseline_bic"]


def test_the_topic_story_is_the_topic_models_on_scipy_docs(quick_tour):
    """LDA and ProdLDA on the shipped docstrings: numbers of the same test documents, and topics of their words."""
    out_dir, metrics, _ = quick_tour
    story = metrics["topics"]
    assert story["data"] == "scipy-docs" and story["num_labels"] == 14
    assert story["num_train_documents"] + story["num_test_documents"] == 1296
    for name in tour.TOPIC_MODELS:
        entry = story["models"][name]
        # Completion perplexity: below the vocabulary's size (uniform guessing) even after a few iterations.
        assert 1 < entry["test_completion_perplexity"] < story["vocabulary_size"]
        assert entry["test_perplexity"] > 1 and -1 <= entry["coherence_npmi"] <= 1
        assert len(entry["top_words"]) == metrics["settings"]["topics"]
    report = (out_dir / "report.md").read_text()
    assert "the topics of SciPy's documentation" in report and "figures/topics_lda.png" in report


def test_the_gold_standard_compares_is_ais_and_bdmc_on_the_vae(quick_tour):
    _, metrics, _ = quick_tour
    gold = metrics["gold_standard"]
    estimators = [row["estimator"] for row in gold["rows"]]
    assert estimators[0].startswith("importance sampling") and len(estimators) == 1 + len(tour.QUICK.ais_steps)
    assert all(finite(row["estimate"]) and row["stderr"] > 0 and row["seconds"] > 0 for row in gold["rows"])
    bdmc = gold["bdmc"]  # lower <= log p(x) <= upper in expectation: the gap is non-negative up to noise
    noise = 4 * (bdmc["lower_stderr"] ** 2 + bdmc["upper_stderr"] ** 2) ** 0.5
    assert bdmc["upper"] - bdmc["lower"] > -noise
    assert finite(gold["nuts"]["max_rhat"]) and gold["nuts"]["min_ess"] > 0


def test_the_classical_models_are_exact(quick_tour):
    _, metrics, _ = quick_tour
    for model in ("mob", "gmm", "fa"):
        entry = metrics["models"][model]
        assert entry["test_elbo"] == -entry["test_nll"]  # the exact posterior is the q
        assert entry["test_nll_stderr"] == 0.0 and entry["nll_method"] == "exact"


def test_the_report_warns_of_a_collapsed_mixture_component(quick_tour):
    out, metrics, _ = quick_tour
    gmm = metrics["models"]["gmm"]
    assert gmm["collapsed_components"] == len(gmm["collapsed"])
    report = (out / "report.md").read_text()
    assert ("components collapsed" in report) == bool(gmm["collapsed"])
    collapsed = {"component": 3, "training_points": 2, "smallest_variance": 1e-6}
    models = {"gmm": {"collapsed": [collapsed], "cluster_sizes": [5] * 10}, "fa": {}}
    (paragraph,) = markdown._collapse_paragraphs(models)
    assert paragraph[1].startswith("Warning: 1 of gmm's 10 components collapsed (component 3 holds 2 training")
    assert "--prior conjugate" in paragraph[1]
    assert markdown._collapse_paragraphs({"gmm": {"collapsed": []}}) == []


def test_the_negative_log_likelihood_is_below_the_negative_elbo(quick_tour):
    """−log p(x) ≤ −ELBO for every q; the NLL is estimated, so up to four of its standard errors."""
    _, metrics, _ = quick_tour
    for model in NEURAL:
        entry = metrics["models"][model]
        assert entry["test_nll"] <= -entry["test_elbo"] + 4 * entry["test_nll_stderr"] + 1e-4, model


def test_the_gaps_add_up(quick_tour):
    """log p(x) − ELBO(q_φ(x)) = approximation gap + amortization gap, both non-negative on average."""
    _, metrics, _ = quick_tour
    models = metrics["models"]
    for model in ("vae", "iwae"):
        entry = models[model]
        total = -entry["test_nll"] - entry["test_elbo"]
        assert entry["approximation_gap"] + entry["amortization_gap"] == pytest.approx(total, abs=1e-3)
        assert entry["amortization_gap"] >= 0  # the refined q never falls below the encoder's
        assert entry["refined_elbo"] - entry["test_elbo"] == pytest.approx(entry["amortization_gap"], abs=1e-3)
    semi, vae = models[tour.SEMI_AMORTIZED], models["vae"]
    assert semi["test_elbo"] == vae["refined_elbo"] >= vae["test_elbo"]
    assert semi["test_nll"] == vae["test_nll"] and semi["amortization_gap_closed"] == vae["amortization_gap"]
    assert semi["approximation_gap"] == pytest.approx(-semi["test_nll"] - semi["test_elbo"], abs=1e-3)
    svi = models["svi"]
    assert svi["approximation_gap"] == pytest.approx(-svi["test_nll"] - svi["test_elbo"], abs=1e-6)


def test_the_estimators_versus_k(quick_tour):
    _, metrics, _ = quick_tour
    estimators = metrics["estimators"]
    ks = estimators["num_samples"]
    assert ks == list(tour.QUICK.estimator_samples) and ks[0] == 1
    assert estimators["num_images"] == tour.QUICK.estimator_images
    for name in ("naive_mc", "importance_sampling"):
        entry = estimators[name]
        assert entry["stderr"][0] is None  # K = 1 has no standard error
        assert all(finite(value) and value > 0 for value in entry["stderr"][1:])
        assert all(1 - 1e-4 <= ess <= k * (1 + 1e-4) for ess, k in zip(entry["ess"], ks, strict=True))
        assert all(finite(value) for value in entry["estimate"])
    bound, stderr = estimators["iwae_bound"]["estimate"], estimators["iwae_bound"]["stderr"]
    assert all(finite(value) and value > 0 for value in stderr)
    for index in range(len(ks) - 1):  # IWAE_K ≤ IWAE_K' for K ≤ K', up to the error of both estimates
        tolerance = 4 * math.hypot(stderr[index], stderr[index + 1])
        assert bound[index + 1] >= bound[index] - tolerance, (ks[index], ks[index + 1])


def test_the_anomalies_are_the_least_likely_test_images(quick_tour):
    _, metrics, _ = quick_tour
    for model in ("vae", "mob"):
        scores = [entry["nll"] for entry in metrics["anomalies"][model]]
        assert len(scores) == 10 and scores == sorted(scores, reverse=True)
        # The mean −log p(x) over the test split is below its ten largest values.
        assert min(scores) >= metrics["models"][model]["test_nll"] - 1e-4


def test_the_html_report_is_self_contained(quick_tour):
    out_dir, _, _ = quick_tour
    page = (out_dir / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(tour.FIGURES)
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert "href=" not in page and "<link" not in page and "<script" not in page and "url(" not in page
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]*", "", page)
    assert not re.search(r"(https?|ftp|file):|//[a-z]", text)
    first = re.search(r'src="data:image/png;base64,([^"]*)" alt="([^"]*)"', page)
    assert base64.b64decode(first.group(1)) == (out_dir / "figures" / f"{first.group(2)}.png").read_bytes()


def test_the_markdown_report_links_every_figure_and_names_the_machine(quick_tour):
    out_dir, metrics, _ = quick_tour
    text = (out_dir / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == sorted(metrics["figures"].values())
    assert all((out_dir / link).is_file() for link in links)
    machine = metrics["machine"]
    assert machine["cpu"] in text and f"jax {machine['jax']}" in text and machine["backend"] in text
    assert "dequantized" in text and "not comparable" in text
    for stage in metrics["stages"]:  # all but the writing of the report itself
        assert (f"| {stage} |" in text) == (stage != "report")


def test_the_table_separates_binary_and_dequantized_data(quick_tour):
    _, metrics, _ = quick_tour
    table = tour.format_table(metrics)
    binary, dequantized = table.split("dequantized digits")
    for label in ("mob (EM)", "ae", "vae", "iwae (K = 10)", "svi", "semi-amortized vae"):
        assert label in binary
    assert "gmm (EM)" in dequantized and "fa (EM)" in dequantized and "gmm" not in binary


def test_progress_reports_every_stage_and_every_epoch(quick_tour):
    _, metrics, calls = quick_tour
    stages = list(dict.fromkeys(call[0] for call in calls))
    assert stages == list(metrics["stages"])
    for stage in stages:
        reported = [call for call in calls if call[0] == stage]
        assert reported[0][1] == 0 and reported[-1][1] == reported[-1][2]  # from started to done
    epochs = [call[1] for call in calls if call[0] == "fit vae"]
    assert epochs == [0, *range(1, tour.QUICK.epochs["vae"] + 1), tour.QUICK.epochs["vae"]]


def test_an_existing_directory_is_refused_and_left_alone(tmp_path):
    out_dir = tmp_path / "taken"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match=r"already exists .*nothing in it was changed") as error:
        tour.run_tour(out_dir, quick=True)
    assert "\n" not in str(error.value)
    assert [path.name for path in out_dir.iterdir()] == ["notes.txt"]
    assert (out_dir / "notes.txt").read_text() == "mine"
    assert [path.name for path in tmp_path.iterdir()] == ["taken"]  # no staging directory either
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="already exists"):
        tour.run_tour(tmp_path / "file", quick=True)


def test_overwrite_replaces_only_an_earlier_tours_report_and_only_once_the_new_one_is_whole(tmp_path):
    out_dir = tmp_path / "taken"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not the report of an earlier tour"):
        tour.run_tour(out_dir, quick=True, overwrite=True)
    assert [path.name for path in out_dir.iterdir()] == ["notes.txt"]

    earlier = tmp_path / "report"
    earlier.mkdir()
    (earlier / "metrics.json").write_text(json.dumps({"tour": {"seed": 0}}))
    (earlier / "report.md").write_text("earlier")
    _check_out_dir(earlier, overwrite=True)  # accepted
    with pytest.raises(RunError, match="already exists"):
        _check_out_dir(earlier, overwrite=False)

    def fill(staging):  # what the tour does: the new report, written beside the earlier one
        (staging / "report.md").write_text("new")
        assert (earlier / "report.md").read_text() == "earlier"  # untouched until the new one is whole

    write_dir(earlier, fill, replace=True)
    assert [path.name for path in earlier.iterdir()] == ["report.md"]
    assert (earlier / "report.md").read_text() == "new"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report", "taken"]  # nothing set aside is left


def test_bad_data_is_refused_before_any_work(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        tour.run_tour(tmp_path / "out", data="nope", quick=True)
    with pytest.raises(RunError, match="only digits has both"):
        tour.run_tour(tmp_path / "out", data="binarized-mnist", quick=True)
    assert list(tmp_path.iterdir()) == []
