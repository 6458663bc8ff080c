"""Latent Dirichlet allocation: lvmjax's `lda.fit` against scikit-learn's `LatentDirichletAllocation` and
gensim's `LdaModel`, side by side, and how its time and memory grow with documents and vocabulary.

    python -m benchmarks.lda [--quick] [--json FILE] [--scaling] [--figure FILE] [--profile]

Every side fits the same training counts with the same K, α = η = 1/K (scikit-learn's defaults) and
local step (at most 100 iterations per document, stopping at a mean |Δγ| below 1e-3), for a fixed
number of iterations or passes (lvmjax `tol=0`, scikit-learn `evaluate_every=-1`), in float32
(lvmjax, gensim) or float64 (scikit-learn, which has no other). Pairs:

    lda_cavi   lvmjax method="cavi" against scikit-learn learning_method="batch", the same max_iter
    lda_svi    lvmjax method="svi" against scikit-learn learning_method="online" (the same batch_size,
               learning_offset τ_0, learning_decay κ, max_iter passes, total_samples = D) and against
               gensim's LdaModel (online VB, Hoffman, Blei & Bach 2010: chunksize = batch_size,
               passes, decay = κ, offset = τ_0, iterations = 100, gamma_threshold = 1e-3,
               update_every = 1). gensim's step size is ρ = (τ_0 + pass + updates / chunksize)^(-κ),
               not scikit-learn's (τ_0 + t)^(-κ): the same hyperparameters, not the same schedule.

scikit-learn runs with n_jobs=1 and again with n_jobs=2 (the machine's two cores; XLA uses both
cores for lvmjax too). Each row gives the seconds (median of repeats; lvmjax after compilation,
whose time is shown apart) and the test perplexity of each side's fitted topics by ONE formula,
`lda.perplexity` (exp(-ELBO / N) on the test split with γ from a local step from ones, which is
scikit-learn's `perplexity`): λ is scikit-learn's `components_` and gensim's `state.get_lambda()`.
(gensim's own `log_perplexity` returns the per-word bound in nats, although its log line prints
2^(-bound); exp(-bound) would be the comparable figure, but its held-out γ start from a random draw.)

Workloads: the shipped scipy-docs corpus (`text.load_corpus("scipy-docs")`, 1042 training and 260
test documents over 1555 words), K = 15; and a corpus drawn from LDA's generative process
(`synthetic_corpus`). `--scaling` runs lvmjax's and scikit-learn's batch fit, one iteration, in a
fresh subprocess per size and records the seconds and the peak resident memory of that process
(VmHWM of /proc/self/status), growing the documents at a fixed vocabulary and the vocabulary at fixed
documents; `--figure` plots them. `--profile` times the parts of one lvmjax CAVI iteration on
scipy-docs and counts the local-step iterations of each document.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import statistics
import subprocess
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse

from benchmarks.common import Row, machine, not_installed, print_rows, timed
from lvmjax import text
from lvmjax.models import lda

FIGURE = pathlib.Path(__file__).resolve().parent / "figures" / "lda_scaling.png"
LOCAL = dict(max_doc_update_iter=100, mean_change_tol=1e-3)  # every side's local step


def synthetic_corpus(
    num_docs: int, vocabulary_size: int, num_topics: int, words_per_doc: int = 100, seed: int = 0
) -> scipy.sparse.csr_matrix:
    """(D, V) float32 CSR counts drawn from LDA: β_k ~ Dir(0.05), θ_d ~ Dir(0.1), N_d ~ 1 + Poisson(N - 1), and
    each word from Cat(Σ_k θ_dk β_k) (z marginalized), by inverse-CDF sampling, in chunks of 1000 documents."""
    rng = np.random.default_rng(seed)
    topics = rng.dirichlet(np.full(vocabulary_size, 0.05), num_topics)  # (K, V)
    lengths = 1 + rng.poisson(words_per_doc - 1, num_docs)
    rows, cols = [], []
    for begin in range(0, num_docs, 1000):
        end = min(begin + 1000, num_docs)
        proportions = rng.dirichlet(np.full(num_topics, 0.1), end - begin)
        cumulative = np.cumsum(proportions @ topics, axis=1)
        cumulative /= cumulative[:, -1:]
        documents = np.repeat(np.arange(end - begin), lengths[begin:end])
        # Row d's CDF shifted by d is increasing across rows, so one searchsorted draws every document's words.
        flat = (cumulative + np.arange(end - begin)[:, None]).ravel()
        draws = np.searchsorted(flat, documents + rng.random(documents.size), side="right")
        rows.append(documents + begin)
        cols.append(np.minimum(draws - documents * vocabulary_size, vocabulary_size - 1))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    counts = scipy.sparse.coo_matrix(
        (np.ones(rows.size, np.float32), (rows, cols)), shape=(num_docs, vocabulary_size)
    ).tocsr()
    counts.sum_duplicates()
    return counts


def to_gensim(counts: scipy.sparse.csr_matrix) -> list[list[tuple[int, float]]]:
    """The CSR rows as gensim's bag-of-words corpus, a list of documents of (word id, count) pairs."""
    return [
        list(zip(counts.indices[begin:end].tolist(), counts.data[begin:end].tolist(), strict=True))
        for begin, end in zip(counts.indptr[:-1], counts.indptr[1:], strict=True)
    ]


def test_perplexity(topic_word: np.ndarray, test: scipy.sparse.csr_matrix, num_topics: int) -> float:
    """`lda.perplexity` of the test counts under λ = `topic_word` (K, V), α = η = 1/K, in float32."""
    prior = jnp.asarray(1 / num_topics, jnp.float32)
    params = lda.Params(jnp.asarray(np.asarray(topic_word), jnp.float32), prior, prior)
    return float(lda.perplexity(params, test, **LOCAL))


def _median_seconds(fit, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(max(1, repeats)):
        begin = time.perf_counter()
        result = fit()
        times.append(time.perf_counter() - begin)
    return statistics.median(times), result


def _quality(perplexity: float, reference: float | None = None) -> str:
    if reference is None:
        return f"test perplexity {perplexity:.2f}"
    return f"test perplexity {perplexity:.2f} ({perplexity / reference - 1:+.2%})"


def compare(
    name: str,
    description: str,
    train: scipy.sparse.csr_matrix,
    test: scipy.sparse.csr_matrix,
    num_topics: int,
    method: str,
    max_iter: int,
    batch_size: int = 128,
    learning_offset: float = 10.0,
    learning_decay: float = 0.7,
    repeats: int = 3,
    peer_repeats: int = 3,
    jobs: tuple[int, ...] = (1, 2),
    with_gensim: bool = True,
) -> list[Row]:
    """Rows of lvmjax `method` ("cavi" or "svi") against scikit-learn ("batch" or "online") with each of
    `jobs`, and for "svi" against gensim: the same settings, exactly `max_iter` iterations or passes."""
    num_docs = train.shape[0]
    online = dict(batch_size=batch_size, learning_offset=learning_offset, learning_decay=learning_decay)
    settings = online if method == "svi" else {}
    result = {}

    def fit():
        params, _ = lda.fit(
            jax.random.key(0), train, num_topics, method=method, max_iter=max_iter, tol=0.0, **settings, **LOCAL
        )
        result["params"] = jax.block_until_ready(params)

    first, ours = timed(fit, repeats)
    ours_perplexity = test_perplexity(result["params"].topic_word, test, num_topics)
    steps = f"{max_iter} passes, batch {batch_size}, τ0 {learning_offset:g}, κ {learning_decay:g}"
    workload = (
        f"{description}: D = {num_docs:,} (test {test.shape[0]:,}), V = {train.shape[1]:,}, "
        f"{int(train.sum()):,} words, K = {num_topics}, α = η = 1/K, "
        + (steps if method == "svi" else f"{max_iter} iterations")
        + "; perplexity of each side's λ by lda.perplexity"
    )
    rows = []

    def row(peer, seconds, perplexity, note=""):
        rows.append(
            Row(
                name,
                workload,
                ours,
                max(0.0, first - ours),
                peer,
                seconds,
                _quality(ours_perplexity),
                "" if perplexity is None else _quality(perplexity, ours_perplexity),
                note,
            )
        )

    try:
        import sklearn
        from sklearn.decomposition import LatentDirichletAllocation
    except ImportError:
        row("scikit-learn", None, None, not_installed("scikit-learn"))
    else:
        learning = "online" if method == "svi" else "batch"
        for n_jobs in jobs:

            def fit_sklearn(n_jobs=n_jobs):
                estimator = LatentDirichletAllocation(
                    n_components=num_topics,
                    learning_method=learning,
                    max_iter=max_iter,
                    evaluate_every=-1,
                    total_samples=num_docs,
                    max_doc_update_iter=LOCAL["max_doc_update_iter"],
                    mean_change_tol=LOCAL["mean_change_tol"],
                    n_jobs=n_jobs,
                    random_state=0,
                    **settings,
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return estimator.fit(train)

            seconds, estimator = _median_seconds(fit_sklearn, peer_repeats)
            perplexity = test_perplexity(estimator.components_, test, num_topics)
            row(f"scikit-learn {sklearn.__version__} {learning} n_jobs={n_jobs}", seconds, perplexity)
    if method == "svi" and with_gensim:
        try:
            import gensim
            from gensim.models import LdaModel
        except ImportError:
            row("gensim", None, None, not_installed("gensim"))
        else:
            corpus = to_gensim(train)  # gensim's own input format, built outside the timing
            words = {word: str(word) for word in range(train.shape[1])}  # V, which gensim would guess from the ids

            def fit_gensim():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return LdaModel(
                        corpus,
                        num_topics=num_topics,
                        id2word=words,
                        chunksize=batch_size,
                        passes=max_iter,
                        update_every=1,
                        alpha=np.full(num_topics, 1 / num_topics, np.float32),
                        eta=1 / num_topics,
                        decay=learning_decay,
                        offset=learning_offset,
                        iterations=LOCAL["max_doc_update_iter"],
                        gamma_threshold=LOCAL["mean_change_tol"],
                        eval_every=None,
                        random_state=0,
                        dtype=np.float32,
                    )

            seconds, model = _median_seconds(fit_gensim, peer_repeats)
            perplexity = test_perplexity(model.state.get_lambda(), test, num_topics)
            row(f"gensim {gensim.__version__} LdaModel", seconds, perplexity)
    return rows


def scipy_docs() -> tuple[scipy.sparse.csr_matrix, scipy.sparse.csr_matrix]:
    corpus = text.load_corpus("scipy-docs")
    return corpus.train, corpus.test


QUICK_SYNTHETIC = dict(num_docs=300, vocabulary_size=200, num_topics=5, words_per_doc=30)
SYNTHETIC = dict(num_docs=5000, vocabulary_size=2000, num_topics=50, words_per_doc=100)


def run(quick: bool = False) -> list[Row]:
    """The workloads of the module docstring (`quick`: tiny sizes, to check that everything runs)."""
    if quick:
        counts = synthetic_corpus(**QUICK_SYNTHETIC)
        train, test = counts[:240], counts[240:]
        tiny = dict(repeats=1, peer_repeats=1, jobs=(1,))
        return compare("lda_cavi", "quick synthetic", train, test, 5, "cavi", 2, **tiny) + compare(
            "lda_svi", "quick synthetic", train, test, 5, "svi", 1, batch_size=64, **tiny
        )
    train, test = scipy_docs()
    rows = compare("lda_cavi", "scipy-docs", train, test, 15, "cavi", 20)
    rows += compare("lda_svi", "scipy-docs", train, test, 15, "svi", 10)
    counts = synthetic_corpus(**SYNTHETIC)
    cut = int(0.8 * counts.shape[0])
    train, test = counts[:cut], counts[cut:]
    big = dict(repeats=2, peer_repeats=1)
    rows += compare("lda_cavi_synthetic", "synthetic LDA", train, test, 50, "cavi", 5, **big)
    rows += compare("lda_svi_synthetic", "synthetic LDA", train, test, 50, "svi", 2, batch_size=256, **big)
    return rows


# --- Scaling: one fresh process per size ---------------------------------------------------------------


def _resident_mib(field: str) -> float:
    """VmHWM (the peak resident memory since the last reset) or VmRSS (now) of this process, in MiB."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def child(side: str, num_docs: int, vocabulary_size: int, num_topics: int, repeats: int) -> dict:
    """In a fresh process: the median seconds of `repeats` one-iteration batch fits after a first one (which,
    for lvmjax, compiles), and the process's peak resident memory (VmHWM) during the first fit and during
    the others, beside its resident memory before them. The peak is reset (by writing 5 to
    /proc/self/clear_refs) after the corpus is drawn and again after the first fit, so that neither drawing
    the corpus nor, in the steady figure, XLA's compiler is counted."""
    counts = synthetic_corpus(num_docs, vocabulary_size, num_topics)
    if side == "lvmjax":
        jax.block_until_ready(jnp.zeros(1) + 1)  # XLA's runtime up before the baseline

        def fit():
            jax.block_until_ready(lda.fit(jax.random.key(0), counts, num_topics, max_iter=1, tol=0.0, **LOCAL))

    else:
        from sklearn.decomposition import LatentDirichletAllocation

        def fit():
            estimator = LatentDirichletAllocation(
                n_components=num_topics, max_iter=1, evaluate_every=-1, random_state=0, **LOCAL
            )
            estimator.fit(counts)

    _reset_peak()
    before = _resident_mib("VmRSS")
    begin = time.perf_counter()
    fit()
    first = time.perf_counter() - begin
    first_peak = _resident_mib("VmHWM")
    _reset_peak()
    seconds, _ = _median_seconds(fit, repeats)
    return dict(
        side=side,
        num_docs=num_docs,
        vocabulary_size=vocabulary_size,
        num_topics=num_topics,
        nonzeros=int(counts.nnz),
        seconds=seconds,
        first_seconds=first,
        baseline_mib=before,
        first_peak_mib=first_peak,
        peak_mib=_resident_mib("VmHWM"),
    )


def _reset_peak() -> None:
    """Resets this process's VmHWM to its current resident memory (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


SCALING_DOCS = dict(sizes=(1_000, 4_000, 16_000), vocabulary_size=2_000)
SCALING_WORDS = dict(sizes=(1_000, 4_000, 16_000), num_docs=2_000)
QUICK_SCALING_DOCS = dict(sizes=(100, 200, 400), vocabulary_size=100)
QUICK_SCALING_WORDS = dict(sizes=(100, 200, 400), num_docs=100)


def scaling(quick: bool = False, num_topics: int = 20, repeats: int = 3) -> list[dict]:
    """One record per side and size (see `child`): documents grown at a fixed vocabulary, then the vocabulary
    grown at fixed documents; each in `python -m benchmarks.lda --child ...`."""
    grow_docs, grow_words = (QUICK_SCALING_DOCS, QUICK_SCALING_WORDS) if quick else (SCALING_DOCS, SCALING_WORDS)
    if quick:
        num_topics, repeats = 5, 1
    shapes = [(size, grow_docs["vocabulary_size"], "docs") for size in grow_docs["sizes"]]
    shapes += [(grow_words["num_docs"], size, "words") for size in grow_words["sizes"]]
    records = []
    for num_docs, vocabulary_size, grown in shapes:
        for side in ("lvmjax", "scikit-learn"):
            command = [
                sys.executable,
                "-m",
                "benchmarks.lda",
                "--child",
                side,
                str(num_docs),
                str(vocabulary_size),
                str(num_topics),
                str(repeats),
            ]
            output = subprocess.run(
                command, capture_output=True, text=True, cwd=pathlib.Path(__file__).resolve().parent.parent
            )
            if output.returncode:
                raise RuntimeError(f"{' '.join(command)} failed:\n{output.stderr}")
            record = json.loads(output.stdout.strip().splitlines()[-1]) | {"grown": grown}
            print(json.dumps(record), file=sys.stderr, flush=True)
            records.append(record)
    return records


def plot_scaling(records: list[dict], path: pathlib.Path = FIGURE) -> None:
    """Seconds per iteration and peak memory against documents and vocabulary, log-log, both sides."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for column, (grown, key, label) in enumerate(
        (("docs", "num_docs", "documents D"), ("words", "vocabulary_size", "vocabulary V"))
    ):
        for side, marker in (("lvmjax", "o-"), ("scikit-learn", "s--")):
            chosen = [record for record in records if record["grown"] == grown and record["side"] == side]
            sizes = [record[key] for record in chosen]
            axes[0, column].loglog(sizes, [record["seconds"] for record in chosen], marker, label=side)
            axes[1, column].loglog(sizes, [record["peak_mib"] for record in chosen], marker, label=side)
            if side == "lvmjax" and all("first_peak_mib" in record for record in chosen):
                first = [record["first_peak_mib"] for record in chosen]
                axes[1, column].loglog(sizes, first, "o:", label="lvmjax, first call (compiling)")
        fixed = chosen[0]["vocabulary_size"] if grown == "docs" else chosen[0]["num_docs"]
        other = "V" if grown == "docs" else "D"
        axes[0, column].set(xlabel=label, ylabel="seconds per CAVI iteration", title=f"time, {other} = {fixed:,}")
        axes[1, column].set(
            xlabel=label, ylabel="peak resident MiB of the process", title=f"memory, {other} = {fixed:,}"
        )
        for axis in axes[:, column]:
            axis.legend()
            axis.grid(True, which="both", alpha=0.3)
    figure.suptitle(f"LDA, K = {records[0]['num_topics']}, ~100 words a document: {machine_title()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def machine_title() -> str:
    name = machine()
    return "AMD EPYC, 2 cores" if "EPYC" in name and name.endswith(" 2 cores (CPU)") else name


# --- Where lvmjax's time goes --------------------------------------------------------------------------


def local_iterations(params: lda.Params, corpus: lda.Corpus, gammas: jax.Array) -> jax.Array:
    """The iterations each document's local step takes from `gammas` (D, K) under λ: `lda.local_step`'s loop
    with a counter."""
    exp_elog_beta = jnp.exp(lda.dirichlet_expectation(params.topic_word))
    eps = jnp.finfo(gammas.dtype).eps

    def one(word_ids, counts, gamma):
        words = exp_elog_beta[:, word_ids]

        def iterate(carry):
            iteration, gamma, _ = carry
            exp_elog_theta = jnp.exp(lda.dirichlet_expectation(gamma))
            new = params.doc_topic_prior + exp_elog_theta * (words @ (counts / (exp_elog_theta @ words + eps)))
            return iteration + 1, new, jnp.mean(jnp.abs(new - gamma))

        def not_done(carry):
            return (carry[0] < LOCAL["max_doc_update_iter"]) & (carry[2] >= LOCAL["mean_change_tol"])

        return jax.lax.while_loop(not_done, iterate, (0, gamma, jnp.inf))[0]

    return jax.jit(jax.vmap(one))(corpus.word_ids, corpus.counts, gammas)


def profile(train: scipy.sparse.csr_matrix, num_topics: int = 15, iterations: int = 20, repeats: int = 5) -> dict:
    """The seconds of each part of one lvmjax CAVI iteration on `train` at the λ of a `iterations` fit
    (each jitted alone, median of `repeats`), and the local-step iterations of its documents."""
    begin = time.perf_counter()
    corpus = jax.block_until_ready(lda.as_corpus(train))
    as_corpus_seconds = time.perf_counter() - begin
    params, _ = lda.fit(jax.random.key(0), train, num_topics, max_iter=iterations, tol=0.0, **LOCAL)
    ones = jnp.ones((train.shape[0], num_topics), jnp.float32)
    options = (LOCAL["max_doc_update_iter"], LOCAL["mean_change_tol"])
    gammas = lda.document_gammas(params, corpus)
    counts = {
        "from ones": np.asarray(local_iterations(params, corpus, ones)),
        "warm (from the previous γ)": np.asarray(local_iterations(params, corpus, gammas)),
    }
    parts = {
        "e_step from ones": jax.jit(lambda p, c, g: lda.e_step(p, c, g, *options)),
        "restart_gammas": jax.jit(lambda p, c, g: lda.restart_gammas(jax.random.key(1), p, c, g, *options)),
        "the statistics at the kept γ (e_step, 0 iterations)": jax.jit(
            lambda p, c, g: lda.e_step(p, c, g, 0, LOCAL["mean_change_tol"])
        ),
        "elbo": jax.jit(lda.elbo),
    }
    seconds = {}
    for part, function in parts.items():
        start = ones if part == "e_step from ones" else gammas
        seconds[part] = timed(
            lambda function=function, start=start: jax.block_until_ready(function(params, corpus, start)), repeats
        )[1]
    one_pass = jax.jit(lambda p, c, g: lda.e_step(p, c, g, 1, LOCAL["mean_change_tol"]))
    gather = jax.jit(lambda p, c: jnp.exp(lda.dirichlet_expectation(p.topic_word)).T[c.word_ids])
    scatter = jax.jit(lambda rows, ids, w: jnp.zeros_like(rows).at[ids.reshape(-1)].add(w))
    by_document = jax.jit(
        lambda p, c, g: jax.vmap(lda.document_elbo, in_axes=(None, 0, 0, 0))(p, c.word_ids, c.counts, g)
    )
    median = int(np.median(counts["from ones"]))
    capped = jax.jit(lambda p, c, g: lda.e_step(p, c, g, median, LOCAL["mean_change_tol"]))
    seconds[f"e_step from ones, capped at the median {median} iterations"] = timed(
        lambda: jax.block_until_ready(capped(params, corpus, ones)), repeats
    )[1]
    seconds["e_step from ones, capped at 1 iteration (its fixed cost)"] = timed(
        lambda: jax.block_until_ready(one_pass(params, corpus, ones)), repeats
    )[1]
    seconds["the gather exp(E[log β]).T[word_ids], (D, L, K)"] = timed(
        lambda: jax.block_until_ready(gather(params, corpus)), repeats
    )[1]
    weights = jnp.ones((corpus.word_ids.size, num_topics), jnp.float32)
    seconds["the scatter-add of the statistics, (D·L, K) into (V, K)"] = timed(
        lambda: jax.block_until_ready(scatter(params.topic_word.T, corpus.word_ids, weights)), repeats
    )[1]
    seconds["document_elbo of every document (restart_gammas takes 2)"] = timed(
        lambda: jax.block_until_ready(by_document(params, corpus, gammas)), repeats
    )[1]
    one_iteration = jax.jit(
        lambda p, c, g: lda.e_step(
            p, c, lda.restart_gammas(jax.random.key(1), p, c, g, *options), 0, LOCAL["mean_change_tol"]
        )
    )
    seconds["restart_gammas + the statistics (one fit iteration)"] = timed(
        lambda: jax.block_until_ready(one_iteration(params, corpus, gammas)), repeats
    )[1]
    seconds["as_corpus (host, once per fit)"] = as_corpus_seconds
    iteration_counts = {
        name: dict(
            mean=float(values.mean()),
            median=float(np.median(values)),
            p90=float(np.percentile(values, 90)),
            max=int(values.max()),
            at_cap=int((values >= LOCAL["max_doc_update_iter"]).sum()),
        )
        for name, values in counts.items()
    }
    return dict(seconds=seconds, local_iterations=iteration_counts, num_docs=train.shape[0], num_topics=num_topics)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the benchmark runs")
    parser.add_argument("--json", metavar="FILE", help="also write the rows (and scaling, profile) to FILE as JSON")
    parser.add_argument("--scaling", action="store_true", help="also time and measure memory across sizes")
    parser.add_argument("--figure", metavar="FILE", default=None, help=f"where --scaling plots (default {FIGURE})")
    parser.add_argument("--profile", action="store_true", help="also time the parts of lvmjax's CAVI iteration")
    parser.add_argument("--no-rows", action="store_true", help="skip the comparison rows")
    parser.add_argument("--child", nargs=5, metavar=("SIDE", "D", "V", "K", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        side, *sizes = args.child
        print(json.dumps(child(side, *map(int, sizes))))
        return []
    rows = [] if args.no_rows else run(args.quick)
    if rows:
        print_rows(rows)
    extra = {}
    if args.scaling:
        extra["scaling"] = scaling(args.quick)
        plot_scaling(extra["scaling"], pathlib.Path(args.figure) if args.figure else FIGURE)
        for record in extra["scaling"]:
            print(json.dumps(record))
    if args.profile:
        train, _ = scipy_docs()
        extra["profile"] = {"scipy-docs": profile(train)}
        sizes = QUICK_SYNTHETIC if args.quick else SYNTHETIC
        counts = synthetic_corpus(**sizes)
        extra["profile"]["synthetic"] = profile(counts[: int(0.8 * counts.shape[0])], sizes["num_topics"], 5, 3)
        print(json.dumps(extra["profile"], indent=2))
    if args.json:
        description = f"{machine()}, jax {jax.__version__}" + (
            " (--quick: sizes too small to mean anything)" if args.quick else ""
        )
        with open(args.json, "w") as file:
            rows_json = [dataclasses.asdict(row) | {"ratio": row.ratio} for row in rows]
            json.dump({"machine": description, "quick": args.quick, "rows": rows_json} | extra, file, indent=2)
    return rows


if __name__ == "__main__":
    main()
