"""The tour's table and its report: the rows of every model, the report as blocks, and their Markdown.

`report_blocks` writes the report once, as a list of blocks ("h", level, text),
("p", text), ("table", header, rows) and ("figure", name, caption); `render_markdown`
and `lvmjax.tour.html.render_html` each render them. Everything here reads the
metrics (as metrics.json holds them), so a saved report can be rendered again.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lvmjax.tour.experiments import (
    ANOMALIES,
    DATA_NAMES,
    OVER_EPOCHS,
    RICH_VAE,
    SEMI_AMORTIZED,
    SEQUENCE_BASELINE,
    SEQUENCE_MODEL,
    TOUR_MODELS,
)
from lvmjax.tour.figures import FIGURES_DIR, GENERATED

__all__ = ["format_table", "jsonable", "render_markdown", "report_blocks", "table_sections"]

_LABELS = {
    "mob": "mob (EM)",
    "gmm": "gmm (EM)",
    "fa": "fa (EM)",
    "ae": "ae",
    "vae": "vae",
    RICH_VAE: "vae, {posterior} q, {prior} prior",
    "iwae": "iwae (K = {num_samples})",
    "svi": "svi",
    SEMI_AMORTIZED: "semi-amortized vae",
    SEQUENCE_MODEL: "hmm ({states} states)",
}
_SECTIONS = {  # the title of each data's section of the table
    "binary": "binary digits: nats per test image of 64 binary pixels",
    "dequantized": "dequantized digits: nats of density per test image in [0, 1)^64 — a different unit, "
    "not comparable with the binary section",
    "nile": "the Nile's annual flow, 1871–1970: nats of density per held-out year (the last years, each "
    "scored given all the years before it)",
}
_HEADER = ("model", "data", "train s", "test ELBO", "test NLL", "± se", "NLL by", "approx. gap", "amort. gap")


def _number(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.{digits}f}"


def _label(name: str, metrics: dict) -> str:
    """The model's row label, with the settings of its configuration it names (the IWAE's K)."""
    return _LABELS[name].format(**metrics["settings"]["configs"].get(name, {}))


def table_sections(metrics: dict) -> list[tuple[str, list[tuple[str, ...]]]]:
    """(title, rows) of each data's section of the table: its models in the order of the metrics."""
    sections = []
    for data, title in _SECTIONS.items():
        rows: list[tuple[str, ...]] = []
        for name, entry in metrics["models"].items():
            if entry["data"] != data:
                continue
            seconds = _number(entry["train_seconds"], 1)
            if "refine_seconds" in entry:  # trained, then refined on the test split
                seconds = f"{seconds} + {entry['refine_seconds']:.2f}"
            nll_by = (
                entry["nll_method"] or f"none (reconstruction −log p(x|f(x)) = {entry['test_reconstruction_nll']:.2f})"
            )
            rows.append(
                (
                    _label(name, metrics),
                    data,
                    seconds,
                    _number(entry["test_elbo"]),
                    _number(entry["test_nll"]),
                    _number(entry.get("test_nll_stderr"), 3),
                    nll_by,
                    _number(entry.get("approximation_gap")),
                    _number(entry.get("amortization_gap")),
                )
            )
        sections.append((title, rows))
    return sections


def format_table(metrics: dict) -> str:
    """The tour's results as plain text: one row per model, in two sections (binary and dequantized data)."""
    lines = []
    for title, rows in table_sections(metrics):
        widths = [max(len(row[column]) for row in (_HEADER, *rows)) for column in range(len(_HEADER))]
        lines.append(title)
        for row in (_HEADER, *rows):
            lines.append(
                "  ".join(
                    cell.ljust(width) if column in (0, 1, 6) else cell.rjust(width)
                    for column, (cell, width) in enumerate(zip(row, widths, strict=True))
                ).rstrip()
            )
        lines.append("")
    lines.append(
        "NLL = −log p(x) (lower is better); ELBO ≤ log p(x); gaps in nats: approximation = log p(x) − "
        "ELBO(best q), amortization = ELBO(best q) − ELBO(encoder's q). train s includes compilation; "
        "semi-amortized: the VAE's training + the refinement of the test φ_i."
    )
    return "\n".join(lines)


def report_blocks(metrics: dict, captions: dict[str, str]) -> list[tuple]:
    """The report as blocks ("h", level, text), ("p", text), ("table", header, rows), ("figure", name, caption)."""
    tour, machine, settings, models = metrics["tour"], metrics["machine"], metrics["settings"], metrics["models"]
    estimators, imputation = metrics["estimators"], metrics["imputation"]
    blocks: list[tuple] = [
        ("h", 1, f"lvmjax tour on {tour['data']}{' (quick)' if tour['quick'] else ''}"),
        (
            "p",
            f"lvmjax {tour['lvmjax']}, {tour['date']}, seed {tour['seed']}. Every number below was computed in "
            f"this run: {tour['num_train']} training and {tour['num_test']} test images, one split for every "
            "model."
            + (
                " This is the quick tour: tiny budgets, so the numbers are a smoke test, not results."
                if tour["quick"]
                else ""
            ),
        ),
        (
            "p",
            f"Machine: {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable), "
            f"{machine['os']}; Python {machine['python']}, jax {machine['jax']} on the {machine['backend']} "
            f"backend ({machine['num_devices']} × {machine['device']}). Load average (1, 5, 15 min) at the start "
            f"{machine['load_average_start']}, at the end {machine['load_average_end']}: other work on the "
            "machine inflates every time below.",
        ),
        ("h", 2, "Models on the test split"),
    ]
    for title, rows in table_sections(metrics):
        blocks += [("p", title + "."), ("table", _HEADER, rows)]
    configs = settings["configs"]
    blocks += [
        (
            "p",
            "NLL = −log p(x), lower is better: exact for the classical models (for which the exact posterior "
            "is the q, so test ELBO = −test NLL), importance-sampled for the neural ones with K = "
            f"{settings['nll_samples']} draws from the refined q per test image, with its standard error. "
            "approx. gap = log p(x) − ELBO(q*) and amort. gap = ELBO(q*) − ELBO(q_φ(x)) (Cremer et al. 2018), "
            f"with q* the encoder's q refined by {settings['refine_steps']} Adam steps per test image; for svi, "
            f"whose φ_i are fitted by {2 * settings['refine_steps']} steps per test image, the whole gap "
            "log p(x) − ELBO is shown as the approximation gap. The semi-amortized VAE is the VAE with q*: its "
            f"ELBO closes the amortization gap of {_number(models[SEMI_AMORTIZED]['amortization_gap_closed'])} "
            f"nats; refining the {tour['num_test']} test φ_i took {models[SEMI_AMORTIZED]['refine_seconds']:.2f} "
            "s (run only). Training seconds include compilation. The binary and the dequantized NLLs are in "
            "different units: one is the probability of 64 binary pixels, the other the density of 64 "
            "real values in [0, 1) (its log minus 64 log 17 = "
            f"{64 * math.log(17):.1f} nats bounds the log-probability of the 17-level image from below), so a "
            "row of one section says nothing about a row of the other.",
        ),
        (
            "p",
            "Budgets: "
            + ", ".join(f"{name} {configs[name]['epochs']} epochs" for name in OVER_EPOCHS)
            + f" (batch {configs['vae']['batch_size']}, Adam {configs['vae']['lr']:g} cosine-decayed, MLP "
            f"{tuple(configs['vae']['hidden'])}, latent dimension {configs['vae']['latent_dim']}; iwae with "
            f"K = {configs['iwae']['num_samples']}, so that each of its epochs costs about "
            f"{configs['iwae']['num_samples']} VAE epochs, and with Adam {configs['iwae']['lr']:g} to make up "
            f"for its fewer epochs); EM for at most {settings['em_max_iter']} iterations: mob and gmm with "
            f"{configs['gmm']['components']} components ({configs['gmm']['covariance']} covariances), fa "
            f"with {configs['fa']['latent_dim']} factors. Iterations run: "
            + ", ".join(f"{name} {models[name]['iterations']}" for name in TOUR_MODELS)
            + f". {RICH_VAE} is the vae, its networks and budget, with a {configs[RICH_VAE]['posterior']} "
            f"posterior q(z | x) of {configs[RICH_VAE]['flow_layers']} flow layers conditioned on the encoder "
            f"and a {configs[RICH_VAE]['prior']} prior of {configs[RICH_VAE]['components']} learned "
            "components (`make_vae(posterior=..., prior=...)`): its test ELBO and NLL beside the vae's are what "
            "the richer q and p(z) buy.",
        ),
        *_collapse_paragraphs(models),
        ("h", 2, "Estimating log p(x): naive Monte Carlo, importance sampling, the IWAE bound"),
        ("figure", "estimators", captions["estimators"]),
        (
            "table",
            ("K", "naive MC", "± se", "ESS", "importance sampling", "± se", "ESS", "IWAE bound", "± se"),
            [
                (
                    str(k),
                    _number(estimators["naive_mc"]["estimate"][i]),
                    _number(estimators["naive_mc"]["stderr"][i], 3),
                    _number(estimators["naive_mc"]["ess"][i], 1),
                    _number(estimators["importance_sampling"]["estimate"][i]),
                    _number(estimators["importance_sampling"]["stderr"][i], 3),
                    _number(estimators["importance_sampling"]["ess"][i], 1),
                    _number(estimators["iwae_bound"]["estimate"][i]),
                    _number(estimators["iwae_bound"]["stderr"][i], 3),
                )
                for i, k in enumerate(estimators["num_samples"])
            ],
        ),
        (
            "p",
            f"Means over the first {estimators['num_images']} test images; ESS = (Σ w)² / Σ w², the effective "
            "number of samples out of K. The same key serves every K, so a larger K extends the draws of a "
            "smaller one.",
        ),
        ("h", 2, "The gold standard: AIS, BDMC and MCMC on the trained VAE"),
        (
            "table",
            ("estimator", "mean log p(x)", "± se", "seconds"),
            [
                (row["estimator"], _number(row["estimate"], 3), _number(row["stderr"], 3), _number(row["seconds"], 2))
                for row in metrics["gold_standard"]["rows"]
            ],
        ),
        ("p", _gold_paragraph(metrics["gold_standard"])),
        ("figure", "posterior_nuts", captions["posterior_nuts"]),
        ("h", 2, "Generated digits"),
    ]
    blocks += [("figure", f"samples_{name}", captions[f"samples_{name}"]) for name in GENERATED]
    blocks += [
        ("h", 2, "Reconstruction and interpolation"),
        ("figure", "reconstructions", captions["reconstructions"]),
        ("figure", "interpolations", captions["interpolations"]),
        ("h", 2, "Imputation: the upper half missing"),
        ("figure", "imputation_binary", captions["imputation_binary"]),
        ("figure", "imputation_dequantized", captions["imputation_dequantized"]),
        (
            "table",
            ("data", "model", "mean squared error on the missing pixels"),
            [
                (data, name, _number(value, 4))
                for data in DATA_NAMES.values()
                for name, value in imputation[f"{data}_mse"].items()
            ],
        ),
        (
            "p",
            f"Over all {tour['num_test']} test images; 'training mean' imputes every missing pixel by its mean "
            "over the training images, the baseline a model has to beat. For the binary data the error of a "
            "probability against the 0/1 truth is the Brier score.",
        ),
        ("h", 2, "The latent space"),
        ("figure", "latent_space", captions["latent_space"]),
        ("h", 2, "Anomaly scores"),
        ("figure", "anomalies", captions["anomalies"]),
        (
            "table",
            ("rank", *(column for name in ANOMALIES for column in (f"{name}: test image (label)", "−log p(x)"))),
            [
                (
                    str(rank + 1),
                    *(
                        cell
                        for entry in entries
                        for cell in (f"{entry['index']} ({entry['label']})", _number(entry["nll"]))
                    ),
                )
                for rank, entries in enumerate(zip(*(metrics["anomalies"][name] for name in ANOMALIES), strict=True))
            ],
        ),
        ("h", 2, "A time series: the Nile"),
        ("figure", "segmentation_hmm", captions["segmentation_hmm"]),
        ("p", _sequence_paragraph(metrics["sequences"])),
        ("h", 2, "Text: the topics of SciPy's documentation"),
        ("p", _topic_paragraph(metrics["topics"])),
        (
            "table",
            (
                "model",
                "test perplexity (documents' bound)",
                "document completion perplexity",
                "NPMI coherence",
                "adjusted Rand index (subpackages)",
                "train seconds",
            ),
            [
                (
                    name,
                    _number(entry["test_document_perplexity"], 1),
                    _number(entry["test_completion_perplexity"], 1),
                    _number(entry["coherence_npmi"], 3),
                    _number(entry["adjusted_rand_index"], 3),
                    _number(entry["train_seconds"], 1),
                )
                for name, entry in metrics["topics"]["models"].items()
            ],
        ),
        ("figure", "topics_lda", captions["topics_lda"]),
        ("figure", "document_topics_lda", captions["document_topics_lda"]),
        ("h", 2, "Training"),
        ("figure", "training_neural", captions["training_neural"]),
        ("figure", "training_em", captions["training_em"]),
        ("h", 2, "Wall-clock time of each stage"),
        (
            "table",
            ("stage", "seconds"),
            [(name, _number(seconds, 1)) for name, seconds in metrics["stages"].items()]
            + [("total (up to writing the report)", _number(metrics["total_seconds"], 1))],
        ),
    ]
    return blocks


def _collapse_paragraphs(models: dict) -> list[tuple]:
    """A paragraph for each mixture with collapsed components (`collapsed` in its evaluation): its NLL is
    then the height of a spurious maximum of the likelihood, and the reader must know."""
    paragraphs = []
    for name, entry in models.items():
        collapsed = entry.get("collapsed") or []
        if not collapsed:
            continue
        which = "; ".join(
            f"component {item['component']} holds {item['training_points']} training images, smallest variance "
            f"{item['smallest_variance']:.2g}"
            for item in collapsed
        )
        paragraphs.append(
            (
                "p",
                f"Warning: {len(collapsed)} of {name}'s {len(entry['cluster_sizes'])} components collapsed "
                f"({which}), held up by reg_covar alone: its likelihood there is a spurious maximum, and its "
                "NLL above rests on it. `--prior conjugate` (MAP-EM) or fewer components keep it from collapsing.",
            )
        )
    return paragraphs


def _gold_paragraph(gold: dict) -> str:
    """What AIS and BDMC say of the importance-sampled log p(x), and what the chains cost."""
    bdmc = gold["bdmc"]
    return (
        f"Means over the first {gold['num_images']} test images, each estimate from the encoder's q; seconds of "
        "the compiled run, compilation not counted. AIS anneals from q to p(x, z) with blackjax's HMC at each "
        "temperature (Neal 2001); importance sampling is the K = 1 temperature of the same path. BDMC "
        f"(Grosse et al. 2015) on {bdmc['num_simulated']} images simulated from the model, whose sampled z is "
        f"an exact posterior draw, brackets their log p(x) between {bdmc['lower']:.3f} ± "
        f"{bdmc['lower_stderr']:.3f} (forward AIS) and {bdmc['upper']:.3f} ± {bdmc['upper_stderr']:.3f} "
        f"(reverse AIS from z) at {bdmc['steps']} steps × {bdmc['chains']} chains, in {bdmc['seconds']:.2f} s: "
        f"a gap of {bdmc['upper'] - bdmc['lower']:.3f} nats. NUTS drew the posterior of "
        f"{gold['nuts']['num_images']} test images (4 chains of 250 draws after 250 warmup steps each) in "
        f"{gold['nuts']['seconds']:.2f} s: accurate, but expensive."
    )


def _sequence_paragraph(story: dict) -> str:
    """What the HMM found in the Nile, and what its states are worth on the held-out years."""
    changes = story["change_years"]
    means = ", then ".join(f"{mean:.0f}" for mean in story["regime_means"])
    found = (
        f"its Viterbi path changes state in {', '.join(map(str, changes))}"
        if changes
        else "its Viterbi path stays in one state"
    )
    gain = story["baseline_test_nll"] - story["test_nll"]
    return (
        f"The {story['states']}-state HMM (Gaussian emissions, Baum–Welch) was fitted to the first "
        f"{story['num_train_years']} years; {found}, with mean flows {means} (10^8 m^3 a year); Cobb (1978) "
        "places the change near 1898. On the last "
        f"{story['num_test_years']} years, each scored given the years before it by the forward algorithm, "
        f"its test NLL is {story['test_nll']:.3f} nats a year against {story['baseline_test_nll']:.3f} for "
        f"one state (every year independent and Gaussian, `{SEQUENCE_BASELINE}`): "
        f"{'a gain' if gain > 0 else 'a loss'} of {abs(gain):.3f} nats a year; BIC {story['bic']:.1f} "
        f"against {story['baseline_bic']:.1f} on the training years (lower is better)."
    )


def _topic_paragraph(story: dict) -> str:
    """What the topic models are, on what text, and how their numbers read."""
    models = story["models"]
    best = min(models, key=lambda name: models[name]["test_completion_perplexity"])
    return (
        f"The seed texts' topic models, on {story['num_train_documents']} docstrings of SciPy "
        f"({story['vocabulary_size']} words, {story['num_labels']} subpackages; {story['num_test_documents']} "
        "held out): LDA by batch coordinate ascent (its ELBO exact and never decreasing), and ProdLDA, whose "
        "encoder network gives q(θ_d | w_d) in one pass (amortized VI, as a VAE). The bound perplexity is "
        "exp(−Σ_d ELBO_d / words) of the test documents (scikit-learn's figure for LDA also charges the topics' "
        "KL(q(β) ‖ p(β)) to them, and is higher); the document-completion "
        "perplexity scores the held-out half of each test document's words given the other half, so no bound "
        f"enters it: {best} predicts held-out words best. The NPMI coherence averages how much more often a topic's "
        "top words occur together than apart; the adjusted Rand index compares each test document's most probable "
        "topic with its subpackage (0: chance)."
    )


def render_markdown(blocks: list[tuple]) -> str:
    """The report as Markdown: the figures are linked, from FIGURES_DIR beside report.md."""
    lines = []
    for block in blocks:
        if block[0] == "h":
            lines += ["#" * block[1] + " " + block[2], ""]
        elif block[0] == "p":
            lines += [block[1], ""]
        elif block[0] == "table":
            header, rows = block[1], block[2]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("| " + " | ".join("---" for _ in header) + " |")
            lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
            lines.append("")
        elif block[0] == "figure":
            lines += [f"![{block[1]}]({FIGURES_DIR}/{block[1]}.png)", "", f"*{block[2]}*", ""]
    return "\n".join(lines)


def jsonable(value: Any) -> Any:
    """Floats that JSON can hold (NaN and infinities become null), tuples as lists."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
