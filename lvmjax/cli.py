"""The `lvmjax` command line.

    lvmjax tour [--data digits] [--out DIR] [--quick]        every model, one table, one report
    lvmjax fit MODEL --data DATA --out RUN_DIR [options]     MODEL: one of the registry's (lvmjax fit --help)
    lvmjax evaluate RUN_DIR [--num-samples K] [--json]
    lvmjax sample RUN_DIR [-n 100]                           generated images, as a figure and .npy
    lvmjax impute RUN_DIR [--mask top-half]                  missing pixels of test images filled in
    lvmjax plot RUN_DIR                                      every figure the run's model can make
    lvmjax select MODEL --data DATA --out RUN_DIR            candidate sizes by BIC and held-out likelihood

Bad input ends with one line on stderr, exit code 2, and no traceback: the library's own errors
(`lvmjax.errors.LvmjaxError`), with the arguments they name written as this command line's flags.
Anything else is a bug, and shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import jax

from lvmjax import __version__, app, applications, parallel, text, time_series
from lvmjax import data as data_lib
from lvmjax.app import registry
from lvmjax.app.config import ARCHITECTURES, CHOICES, PRECISIONS, PRIORS
from lvmjax.app.selection import CRITERIA
from lvmjax.errors import CheckpointError, LvmjaxError, RunError, TrainingDiverged, render
from lvmjax.models import hmm, lda
from lvmjax.models.bayesian_mixture import WEIGHT_PRIORS
from lvmjax.models.gaussian_mixture import COVARIANCE_TYPES

__all__ = ["QUICK_XLA_FLAGS", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, not the usage and a line."""

    def error(self, message):
        raise _UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


class _UsageError(Exception):
    pass


class _Interrupted(Exception):
    """Ctrl-C during training, with what was kept."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {text}")
    return value


def _fraction_or_one(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _sizes(text: str) -> list[int]:
    """Candidate sizes: "1-10", "2,4,8" or both ("1-4,8"), each at least 1, in the order given."""
    sizes: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected sizes such as 1-10 or 2,4,8, got {text!r}") from None
        if first < 1 or last < first:
            raise argparse.ArgumentTypeError(f"expected sizes of at least 1, in increasing ranges, got {text!r}")
        sizes += [size for size in range(first, last + 1) if size not in sizes]
    return sizes


def _covariances(text: str) -> list[str]:
    """Covariance types, comma-separated: "full,diag,spherical"."""
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in COVARIANCE_TYPES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected covariance types from {', '.join(COVARIANCE_TYPES)}, comma-separated, got {text!r}"
        )
    return list(dict.fromkeys(names))


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 256,256, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"expected positive widths like 256,256, got {text!r}")
    return widths


def _saved_run_arguments(parser: argparse.ArgumentParser, data_dir: bool = True) -> None:
    """RUN_DIR (and --data-dir) of the commands that read a saved run."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by 'lvmjax fit'")
    if data_dir:
        parser.add_argument(
            "--data-dir", default=None, help="where the dataset's files are, if not where they were at fit time"
        )


def _models_reading(option: str) -> str:
    """The models whose spec reads the `FitConfig` field `option`, for its help text."""
    return ", ".join(spec.name for spec in registry.specs() if option in spec.options)


def _all_choices(option: str) -> list[str]:
    """Every value of `option` that some model takes (`CHOICES`, `ModelSpec.choices`), in order."""
    values = dict.fromkeys(CHOICES[option])
    for spec in registry.specs():
        values.update(dict.fromkeys(spec.choices.get(option, ())))
    return list(values)


def _names(predicate) -> str:
    """The names of the registry's models for which `predicate(spec)` holds."""
    return ", ".join(spec.name for spec in registry.specs() if predicate(spec))


def _by_kind() -> dict[app.DataKind, list[str]]:
    """The registry's model names by the kind of data they take."""
    kinds: dict[app.DataKind, list[str]] = {}
    for spec in registry.specs():
        kinds.setdefault(spec.data_kind, []).append(spec.name)
    return kinds


def _takes_sequences(spec) -> bool:
    return spec.data_kind is app.DataKind.SEQUENCES


def _models_help() -> str:
    kinds = _by_kind()
    described = "; ".join(f"{spec.name}: {spec.summary}" for spec in registry.specs())
    by_kind = "; ".join(f"{', '.join(names)} take {kind.value} data" for kind, names in kinds.items())
    return f"{described}. {by_kind}"


def build_parser() -> argparse.ArgumentParser:
    defaults = app.FitConfig(model=registry.names()[0])
    parser = _Parser(
        prog="lvmjax",
        description="Latent variable models and variational inference in JAX.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lvmjax {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    fit = commands.add_parser(
        "fit",
        help="train a model and save it to a run directory",
        description="Train a model on the training split and write RUN_DIR: config.json, metrics.jsonl "
        "(one line per epoch or EM iteration) and checkpoint/ (the parameters).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    fit.add_argument("model", choices=registry.names(), help=_models_help())
    fit.add_argument(
        "--data",
        default=None,
        help=f"dataset: one of {', '.join(data_lib.DATASETS)}, or a .npy, .npz or .csv file with "
        "one datapoint per row (digits is binarized for the binary models and dequantized "
        f"for the real-valued ones); for the sequence models ({_names(_takes_sequences)}) one of "
        f"{', '.join(time_series.SEQUENCE_DATASETS)}, or a .csv file of time steps (one per row; a "
        f"'{time_series.SEQUENCE_COLUMN}' column in its header splits it into sequences), a .npy "
        "(T, D) or a .npz of one array per sequence; for the topic models "
        f"({_names(lambda spec: spec.data_kind is app.DataKind.COUNTS)}) one of {', '.join(text.CORPORA)}, "
        "or a .txt file of one document per line, a .npz count matrix (scipy.sparse.save_npz) or a dense "
        ".npy one (documents x words; FILE.vocabulary.txt beside it names the words) (default: "
        + "; ".join(f"{kind.default_data} for {', '.join(names)}" for kind, names in _by_kind().items())
        + ")",
    )
    fit.add_argument(
        "--data-dir",
        default=None,
        help="directory holding the dataset's files (binarized-mnist: binarized_mnist.npz "
        "or the .amat files; mnist, fashion-mnist: the four IDX files, plain or .gz, whose "
        "grey levels the binary models see dynamically binarized)",
    )
    fit.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to create; must not exist")
    fit.add_argument(
        "--epochs",
        type=_positive_int,
        default=defaults.epochs,
        help=f"passes over the training set ({_models_reading('epochs')})",
    )
    fit.add_argument(
        "--batch-size",
        type=_positive_int,
        default=defaults.batch_size,
        help=f"minibatch size ({_models_reading('batch_size')})",
    )
    fit.add_argument(
        "--latent-dim",
        type=_positive_int,
        default=defaults.latent_dim,
        help=f"dimension of z ({_models_reading('latent_dim')})",
    )
    fit.add_argument(
        "--num-samples",
        type=_positive_int,
        default=None,
        help="K: samples per datapoint of the training objective (default: the model's, "
        + ", ".join(
            f"{spec.name} {spec.default_num_samples}" for spec in registry.specs() if "num_samples" in spec.options
        )
        + ")",
    )
    fit.add_argument(
        "--lr",
        type=_positive_float,
        default=defaults.lr,
        help=f"Adam's learning rate (cosine-decayed to 5%% of it; {_models_reading('lr')})",
    )
    fit.add_argument("--seed", type=int, default=defaults.seed, help="seed of every random choice")
    fit.add_argument(
        "--hidden",
        type=_widths,
        default=defaults.hidden,
        metavar="W,W",
        help=f"widths of the hidden layers ({_models_reading('hidden')})",
    )
    fit.add_argument(
        "--architecture",
        choices=ARCHITECTURES,
        default=defaults.architecture,
        help=f"mlp, or conv for image data ({_models_reading('architecture')})",
    )
    fit.add_argument(
        "--components",
        type=_positive_int,
        default=defaults.components,
        help=f"K: mixture components ({_models_reading('components')})",
    )
    fit.add_argument(
        "--covariance",
        choices=COVARIANCE_TYPES,
        default=defaults.covariance,
        help=f"covariance of each Gaussian component ({_models_reading('covariance')})",
    )
    fit.add_argument(
        "--states",
        type=_positive_int,
        default=defaults.states,
        help=f"K: hidden states ({_models_reading('states')})",
    )
    fit.add_argument(
        "--emission",
        choices=hmm.EMISSIONS,
        default=defaults.emission,
        help="p(x_t | z_t): gaussian (with --covariance full or diag), categorical (one column of category "
        f"indices 0, 1, ...) or poisson (columns of counts) ({_models_reading('emission')})",
    )
    fit.add_argument(
        "--topics",
        type=_positive_int,
        default=defaults.topics,
        help=f"K: topics ({_models_reading('topics')})",
    )
    fit.add_argument(
        "--method",
        choices=lda.METHODS,
        default=defaults.method,
        help="cavi: batch coordinate ascent over all documents; svi: stochastic VI with natural gradients on "
        f"minibatches of --batch-size documents, --max-iter passes ({_models_reading('method')})",
    )
    fit.add_argument(
        "--tol",
        type=_non_negative_float,
        default=defaults.tol,
        help=f"stop once the ELBO per word changes by less than this between iterations ({_models_reading('tol')})",
    )
    fit.add_argument(
        "--learning-offset",
        type=_non_negative_float,
        default=defaults.learning_offset,
        metavar="TAU0",
        help=f"τ_0 of svi's step size ρ_t = (τ_0 + t)^-κ ({_models_reading('learning_offset')})",
    )
    fit.add_argument(
        "--learning-decay",
        type=_non_negative_float,
        default=defaults.learning_decay,
        metavar="KAPPA",
        help=f"κ of svi's step size, in (0.5, 1] for convergence ({_models_reading('learning_decay')})",
    )
    fit.add_argument(
        "--doc-topic-prior",
        type=_positive_float,
        default=None,
        metavar="ALPHA",
        help="α of θ_d ~ Dir(α) (default: 1/K for lda, 1 for prodlda, as scikit-learn and the ProdLDA paper; "
        f"{_models_reading('doc_topic_prior')})",
    )
    fit.add_argument(
        "--topic-word-prior",
        type=_positive_float,
        default=None,
        metavar="ETA",
        help=f"η of β_k ~ Dir(η) (default: 1/K; {_models_reading('topic_word_prior')})",
    )
    fit.add_argument(
        "--min-df",
        type=_positive_int,
        default=defaults.min_df,
        metavar="N",
        help=f"a text file's vocabulary: the words of at least N training documents ({_models_reading('min_df')})",
    )
    fit.add_argument(
        "--max-df",
        type=_fraction_or_one,
        default=defaults.max_df,
        metavar="SHARE",
        help=f"and of at most this share of them ({_models_reading('max_df')})",
    )
    fit.add_argument(
        "--max-iter",
        type=_positive_int,
        default=defaults.max_iter,
        help=f"the most EM iterations ({_models_reading('max_iter')})",
    )
    fit.add_argument(
        "--n-init",
        type=_positive_int,
        default=defaults.n_init,
        help="EM restarts from different k-means++ starts, run in parallel; the best is kept "
        f"({_models_reading('n_init')})",
    )
    fit.add_argument(
        "--reg-covar",
        type=_non_negative_float,
        default=argparse.SUPPRESS,  # absent unless given: refused beside --prior conjugate
        metavar="EPS",
        help=f"added to the diagonal of every covariance estimate (not with --prior conjugate), so that a "
        f"component collapsing onto a few points stays finite (default {defaults.reg_covar:g}; "
        f"{_models_reading('reg_covar')})",
    )
    fit.add_argument(
        "--prior",
        choices=_all_choices("prior"),
        default=None,
        help="for gmm: the prior on the parameters, none (maximum likelihood, the default) or conjugate "
        "(MAP-EM under Fraley & Raftery's Normal-inverse-Wishart prior with data-dependent defaults, which "
        "keeps every component from collapsing); for vae and iwae: p(z), normal (N(0, I), the default), "
        "mixture (a learned mixture of --components Gaussians) or vamp (the VampPrior of Tomczak & Welling "
        "2018, the aggregate posterior of --components learned pseudo-inputs)",
    )
    fit.add_argument(
        "--posterior",
        choices=_all_choices("posterior"),
        default=None,
        help="q(z | x): diagonal (the default) or full-rank Gaussian, or a normalizing flow of --flow-layers "
        "layers conditioned on the encoder: iaf (inverse autoregressive), realnvp (affine coupling) or "
        f"spline (rational-quadratic coupling) ({_models_reading('posterior')})",
    )
    fit.add_argument(
        "--flow-layers",
        type=_positive_int,
        default=defaults.flow_layers,
        help=f"layers of a flow posterior ({_models_reading('flow_layers')})",
    )
    fit.add_argument(
        "--gradient",
        choices=_all_choices("gradient"),
        default=None,
        help="gradient estimator: reparam (the default), stl (sticking the landing, Roeder et al. 2017; vae) "
        "or dreg (doubly reparameterized, Tucker et al. 2019; iwae); both need a posterior with the "
        "density of any z, not iaf",
    )
    fit.add_argument(
        "--beta",
        type=_positive_float,
        default=defaults.beta,
        help=f"β of the β-ELBO, E[log p(x | z)] − β KL ({_models_reading('beta')})",
    )
    fit.add_argument(
        "--warmup-epochs",
        type=_non_negative_int,
        default=defaults.warmup_epochs,
        help=f"KL warm-up: β rises linearly from 0 over this many epochs ({_models_reading('warmup_epochs')})",
    )
    fit.add_argument(
        "--free-bits",
        type=_non_negative_float,
        default=defaults.free_bits,
        metavar="NATS",
        help="free bits: the KL of each latent dimension counts as at least this many nats, per datapoint "
        f"({_models_reading('free_bits')})",
    )
    fit.add_argument(
        "--weight-prior",
        choices=WEIGHT_PRIORS,
        default=defaults.weight_prior,
        help="prior on the mixing weights: dirichlet-process (truncated stick-breaking, which switches "
        "surplus components off) or dirichlet (symmetric, concentration 1/K) "
        f"({_models_reading('weight_prior')})",
    )
    fit.add_argument(
        "--test-fraction",
        type=_fraction,
        default=defaults.test_fraction,
        help="share of a data file's rows held out for testing, chosen with --seed",
    )
    fit.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=100,
        metavar="N",
        help="save the training state to RUN_DIR/checkpoints every N epochs and after the last "
        f"({', '.join(spec.name for spec in registry.specs() if spec.checkpointed)})",
    )
    fit.add_argument(
        "--devices",
        type=_positive_int,
        default=None,
        metavar="N",
        help="train data-parallel on the first N devices (default: 1; in a multi-process run set "
        "up by JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID, all of every "
        "process's); each takes batch-size / N rows of every minibatch, or 1/N of EM's data "
        f"({', '.join(spec.name for spec in registry.specs() if spec.devices)})",
    )
    fit.add_argument(
        "--max-skipped-steps",
        type=_positive_int,
        default=defaults.max_skipped_steps,
        metavar="N",
        help="a training step whose objective or gradient is NaN or infinite is skipped (the parameters "
        "stay as they were); N such steps in a row stop the run, leaving the last checkpoint "
        f"({_models_reading('max_skipped_steps')})",
    )
    fit.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=defaults.precision,
        help="float type of the fit and of its evaluation: float64 for data whose scales float32 "
        f"cannot resolve ({_models_reading('precision')})",
    )
    fit.add_argument(
        "--resume",
        action="store_true",
        help="continue the unfinished run in --out from its last checkpoint; repeat the original "
        "command's options. It ends with the parameters of an uninterrupted run",
    )
    fit.add_argument("--quiet", action="store_true", help="no progress output")

    tour = commands.add_parser(
        "tour",
        help="fit every model on the digits, compare them in one table and write a report",
        description="Fit the mixture of Bernoullis, the Gaussian mixture and factor analysis (EM), the "
        "autoencoder, the VAE, the IWAE (K = 50), non-amortized SVI and the semi-amortized VAE on "
        "one train/test split, and a hidden Markov model on the Nile's annual flow; print their test ELBO "
        "and NLL in one table; write DIR/report.html "
        "(self-contained), DIR/report.md, DIR/metrics.json and the figures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    tour.add_argument("--data", default="digits", help="dataset (the tour needs digits: binary and real-valued)")
    tour.add_argument("--out", default="lvmjax-tour", metavar="DIR", help="directory to create; must not exist")
    tour.add_argument("--quick", action="store_true", help="a few epochs and small K: the whole story in a minute")
    tour.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    tour.add_argument("--quiet", action="store_true", help="no progress output")
    tour.add_argument(
        "--overwrite",
        action="store_true",
        help="replace DIR if it holds an earlier tour's report (once the new one is complete)",
    )

    evaluate = commands.add_parser(
        "evaluate",
        help="test-split metrics of a saved run",
        description="Evaluate a run on the test split: test ELBO and test NLL (nats per datapoint; exact for "
        f"{_names(lambda spec: spec.nll_method == 'exact')}, importance-sampled for "
        f"{_names(lambda spec: spec.nll_method == 'importance sampling')}), for the models with an "
        "encoder the approximation and amortization gaps, for the exact ones the BIC and, for "
        "mixtures on labelled data, the adjusted Rand index of the clusters.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _saved_run_arguments(evaluate)
    evaluate.add_argument(
        "--num-samples", type=_positive_int, default=5000, help="K: importance samples per test datapoint for the NLL"
    )
    evaluate.add_argument(
        "--estimator",
        choices=app.ESTIMATORS,
        default="is",
        help="the estimator of an estimated log p(x) "
        f"({_names(lambda spec: spec.nll_method == 'importance sampling')}): is, importance sampling from the "
        "refined q; ais, annealed importance sampling from the encoder's q (the prior for models without one), "
        "against which the gaps are then measured",
    )
    evaluate.add_argument(
        "--ais-steps", type=_positive_int, default=1000, metavar="T", help="AIS temperatures (with --estimator ais)"
    )
    evaluate.add_argument(
        "--ais-chains", type=_positive_int, default=16, metavar="C", help="AIS chains per test datapoint"
    )
    evaluate.add_argument(
        "--bdmc",
        type=int,
        default=0,
        metavar="N",
        help="also simulate N datapoints from the model and report BDMC's lower and upper bounds on their "
        "log p(x) with the AIS settings (Grosse et al. 2015): their gap is how far AIS is from the truth",
    )
    evaluate.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    evaluate.add_argument("--quiet", action="store_true", help="no progress output")

    sample = commands.add_parser(
        "sample",
        help="generate images from a saved run",
        description="Draw z ~ p(z), x ~ p(x | z) from a saved run "
        f"({_names(lambda spec: spec.generative is not None)}) and write the images as a figure "
        "(FILE.png) and an array (FILE.npy, shape (n, D)). For the Bernoulli models "
        f"({_names(lambda spec: spec.pixel_probabilities and spec.generative is not None)}) the images "
        "are the pixel probabilities E[x | z] unless --draw.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _saved_run_arguments(sample, data_dir=False)
    sample.add_argument("-n", "--num", type=_positive_int, default=100, help="how many to generate")
    sample.add_argument("--draw", action="store_true", help="binary draws x ~ p(x | z) for the Bernoulli models")
    sample.add_argument("--seed", type=int, default=0, help="seed of the draws")
    sample.add_argument("--out", default=None, metavar="FILE.png", help="where to write (default RUN_DIR/samples.png)")
    sample.add_argument("--overwrite", action="store_true", help="replace FILE.png and FILE.npy if they exist")

    impute = commands.add_parser(
        "impute",
        help="fill in the missing pixels of test images under a saved run",
        description="Hide part of each of the first N test images and replace it by E[x_m | x_o] under the "
        f"run's model (exact for {_names(lambda spec: spec.impute and spec.nll_method == 'exact')}; "
        "importance-sampled for "
        f"{_names(lambda spec: spec.impute and spec.nll_method == 'importance sampling')}); "
        "print the squared error on the hidden entries; write a figure (FILE.png) and the "
        "imputed images (FILE.npy, shape (N, D)).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _saved_run_arguments(impute)
    impute.add_argument(
        "--mask",
        choices=applications.MASKS,
        default="top-half",
        help="what is missing: half of each image, or a random half of the entries",
    )
    impute.add_argument("-n", "--num-images", type=_positive_int, default=100, help="test images to impute")
    impute.add_argument(
        "--num-samples",
        type=_positive_int,
        default=1000,
        help="K: importance samples per image for "
        f"{_names(lambda spec: spec.impute and spec.nll_method == 'importance sampling')}",
    )
    impute.add_argument(
        "--method",
        choices=("is", "mcmc"),
        default="is",
        help="how the models with a continuous z draw it given the observed entries "
        f"({_names(lambda spec: spec.impute_by_mcmc is not None)}): is, importance weighting; mcmc, NUTS on "
        "p(z | x_o), 4 chains of --num-samples / 4 draws after 200 warmup steps",
    )
    impute.add_argument("--seed", type=int, default=0, help="seed of the importance samples and the random mask")
    impute.add_argument(
        "--out", default=None, metavar="FILE.png", help="where to write (default RUN_DIR/imputation-MASK.png)"
    )
    impute.add_argument("--overwrite", action="store_true", help="replace FILE.png and FILE.npy if they exist")

    plot = commands.add_parser(
        "plot",
        help="every figure of a saved run",
        description="Write the figures that the run's model can make: the training curve, 100 generated "
        "images, imputation of the top half, reconstructions and interpolations "
        f"({_names(lambda spec: spec.encoder)}), component means "
        f"({_names(lambda spec: spec.component_means is not None)}) and the latent space coloured by "
        "label.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _saved_run_arguments(plot)
    plot.add_argument("--out", default=None, metavar="DIR", help="where to write (default RUN_DIR/figures)")
    plot.add_argument("--seed", type=int, default=0, help="seed of the generated images and the imputation")
    plot.add_argument("--overwrite", action="store_true", help="replace figures already in DIR")

    selecting = _names(lambda spec: spec.selection is not None)
    select = commands.add_parser(
        "select",
        help="choose a model's size by BIC or held-out log-likelihood, and save the chosen fit as a run",
        description=f"Fit every candidate size of a model ({selecting}) on most of the training split, "
        "with its restarts in parallel, and score it by BIC there and by the log-likelihood of the rest "
        "(the validation part; the test split is never looked at). The chosen candidate is fitted again "
        "on the whole training split and written to RUN_DIR as a run (for evaluate, sample, impute and "
        "plot), with the candidates' table as RUN_DIR/selection.json and their figure as "
        "RUN_DIR/selection.png.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    select.add_argument("model", choices=registry.names(), help=f"the model ({selecting})")
    select.add_argument("--data", default=None, help="dataset, as for 'lvmjax fit' (default: digits)")
    select.add_argument("--data-dir", default=None, help="directory holding the dataset's files, as for 'lvmjax fit'")
    select.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to create; must not exist")
    select.add_argument(
        "--components",
        type=_sizes,
        default=None,
        metavar="SIZES",
        help="candidate numbers of components, e.g. 1-10 or 2,4,8 (default 1-10; "
        f"{_names(lambda spec: spec.selection == 'components')})",
    )
    select.add_argument(
        "--latent-dim",
        type=_sizes,
        default=None,
        metavar="SIZES",
        help="candidate dimensions of z, e.g. 1-5 (default 1-5; "
        f"{_names(lambda spec: spec.selection == 'latent_dim')})",
    )
    select.add_argument(
        "--covariance",
        type=_covariances,
        default=None,
        metavar="TYPES",
        help=f"covariance types to compare, e.g. full,diag,spherical (default full; {_models_reading('covariance')})",
    )
    select.add_argument(
        "--criterion",
        choices=CRITERIA,
        default="bic",
        help="bic: the lowest BIC on the fitting part; heldout: the highest log-likelihood of the validation part",
    )
    select.add_argument(
        "--validation-fraction",
        type=_fraction,
        default=0.2,
        help="share of the training split held out to score the candidates",
    )
    select.add_argument(
        "--n-init", type=_positive_int, default=defaults.n_init, help="EM restarts per candidate, run in parallel"
    )
    select.add_argument("--max-iter", type=_positive_int, default=defaults.max_iter, help="the most EM iterations")
    select.add_argument(
        "--reg-covar", type=_non_negative_float, default=argparse.SUPPRESS, metavar="EPS", help="as for 'lvmjax fit'"
    )
    select.add_argument("--prior", choices=PRIORS, default=None, help="as for 'lvmjax fit' of gmm")
    select.add_argument("--test-fraction", type=_fraction, default=defaults.test_fraction, help="as for 'lvmjax fit'")
    select.add_argument("--precision", choices=PRECISIONS, default=defaults.precision, help="as for 'lvmjax fit'")
    select.add_argument("--seed", type=int, default=defaults.seed, help="seed of the split and of every fit")
    select.add_argument("--json", action="store_true", help="print one JSON object on stdout; its last key is 'chosen'")
    select.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


class _Progress:
    """A progress bar on a terminal, plain lines otherwise, nothing with --quiet."""

    def __init__(self, total: int, label: str, quiet: bool):
        self.total, self.label, self.quiet = total, label, quiet
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self.task = self.bar.add_task(label, total=total, status="compiling")
            self.bar.start()

    def __call__(self, epoch: int, metrics: dict):
        status = f"objective {metrics['train_objective']:.3f}"
        if metrics.get("skipped_steps"):
            status += f", {metrics['skipped_steps']} non-finite steps skipped"
        if self.bar is not None:
            self.bar.update(self.task, completed=epoch, status=status)
        elif not self.quiet and (epoch == 1 or epoch == self.total or epoch % max(1, self.total // 20) == 0):
            print(
                f"{self.label} epoch {epoch}/{self.total}  {status}  {metrics['seconds']:.1f}s",
                file=sys.stderr,
                flush=True,
            )

    def step(self, done: int, status: str):
        """`done` of `total` steps (candidates of a selection), each named by `status`."""
        if self.bar is not None:
            self.bar.update(self.task, completed=done, status=status)
        elif not self.quiet:
            print(f"{self.label} {done}/{self.total}  {status}", file=sys.stderr, flush=True)

    def batches(self, done: int, total: int):
        """For `app.evaluate`: `done` of `total` test batches."""
        if self.bar is not None:
            self.bar.update(
                self.task, completed=done, total=total, status=f"{done}/{total} test batches" if done else "compiling"
            )
        elif not self.quiet and done:
            print(f"{self.label} test batch {done}/{total}", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.stop()


class _BatchProgress:
    """`app.evaluate`'s progress over test batches: a `_Progress`, made at the first call."""

    def __init__(self, label: str, quiet: bool):
        self.label, self.quiet = label, quiet
        self.progress: _Progress | None = None

    def __call__(self, done: int, total: int):
        if self.progress is None:
            self.progress = _Progress(total, self.label, self.quiet)
        self.progress.batches(done, total)

    def close(self):
        if self.progress is not None:
            self.progress.close()


class _Status:
    """A transient spinner on a terminal while a step without epochs runs (EM); nothing otherwise."""

    def __init__(self, label: str, quiet: bool):
        self.status = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console

            self.status = Console(stderr=True).status(label)

    def __enter__(self):
        if self.status is not None:
            self.status.start()
        return self

    def __exit__(self, *exc_info):
        if self.status is not None:
            self.status.stop()


def _mesh(requested: int | None):
    """The devices of `lvmjax fit`: None for one, else a `parallel.data_mesh`."""
    distributed = parallel.initialize_distributed()
    if requested is None:
        return parallel.data_mesh() if distributed else None
    if requested > len(jax.devices()):
        raise RunError(
            f"{{devices}} {requested} asks for more than the {len(jax.devices())} "
            f"{jax.devices()[0].platform.upper()} device(s) here (on a CPU, "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N simulates N)."
        )
    return parallel.data_mesh(requested)


def _data(data: str | None) -> str | None:
    """--data as the run saves it: a user's file by its absolute path, so that 'lvmjax evaluate' finds it from
    anywhere; a dataset's name as given."""
    if data is not None and Path(data).suffix.lower() in data_lib.FILE_SUFFIXES:
        return str(Path(data).absolute())
    return data


def _reg_covar(args) -> float:
    """--reg-covar, or its default; refused beside --prior conjugate, whose M-step does not add it."""
    if not hasattr(args, "reg_covar"):
        return app.FitConfig.reg_covar
    if args.prior == "conjugate":
        raise RunError(
            f"{{reg_covar}} is for maximum-likelihood EM; with {{prior}} {args.prior} the prior's scale keeps "
            "every covariance positive definite and nothing is added: drop one of the two."
        )
    return args.reg_covar


def _warn(result, parser_flags) -> None:
    """The fit's warnings (`FitResult.warnings`), one line each on stderr, even with --quiet."""
    for warning in result.warnings:
        print(f"lvmjax: warning: {' '.join(render(warning, parser_flags).split())}", file=sys.stderr)


def _fit(args) -> int:
    mesh = _mesh(args.devices)
    writes = jax.process_index() == 0  # in a multi-process run, process 0 writes RUN_DIR
    args.quiet = args.quiet or not writes
    config = app.FitConfig(
        model=args.model,
        data=_data(args.data),
        data_dir=args.data_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        latent_dim=args.latent_dim,
        num_samples=args.num_samples,
        lr=args.lr,
        seed=args.seed,
        hidden=args.hidden,
        architecture=args.architecture,
        components=args.components,
        covariance=args.covariance,
        max_iter=args.max_iter,
        n_init=args.n_init,
        reg_covar=_reg_covar(args),
        prior=args.prior,
        posterior=args.posterior,
        gradient=args.gradient,
        flow_layers=args.flow_layers,
        beta=args.beta,
        warmup_epochs=args.warmup_epochs,
        free_bits=args.free_bits,
        weight_prior=args.weight_prior,
        states=args.states,
        emission=args.emission,
        topics=args.topics,
        method=args.method,
        tol=args.tol,
        learning_offset=args.learning_offset,
        learning_decay=args.learning_decay,
        doc_topic_prior=args.doc_topic_prior,
        topic_word_prior=args.topic_word_prior,
        min_df=args.min_df,
        max_df=args.max_df,
        test_fraction=args.test_fraction,
        max_skipped_steps=args.max_skipped_steps,
        precision=args.precision,
    )
    spec = config.spec
    if args.resume:
        run_dir = app.resume_run(args.out, config)
    elif writes:
        app.check_new_run_dir(args.out)
    dataset = app.load_data(config)
    app.check_config_against_data(config, dataset)
    mesh = app.check_mesh(config, mesh)
    if not spec.checkpointed:
        with _Status(
            f"fit {config.model}: {dataset.train.shape[0]} x {dataset.train.shape[1]} ({dataset.name})", args.quiet
        ):
            result = app.fit(config, dataset, mesh=mesh)
        if not writes:
            return 0
        run_dir = app.save_run(args.out, config, result)
    else:
        if not args.resume:
            run_dir = app.start_run(args.out, config, dataset) if writes else Path(args.out)
        checkpoints = app.Checkpoints(run_dir, args.checkpoint_every)
        progress = _Progress(config.epochs, f"fit {config.model}", args.quiet)
        try:
            result = app.fit(config, dataset, progress, checkpoints, mesh)
        except (KeyboardInterrupt, LvmjaxError) as error:
            progress.close()
            checkpoints.wait()
            epoch = checkpoints.latest_epoch()
            saved = f"its last checkpoint (epoch {epoch})" if epoch else "its configuration"
            where = f"{run_dir} keeps {saved}; repeat the command with --resume to continue"
            if isinstance(error, TrainingDiverged):  # resuming would diverge again
                where = f"{run_dir} keeps {saved}; fit again into a new --out"
            if isinstance(error, CheckpointError):  # resuming would fail again
                where = f"{run_dir} was left as it was; fit again into a new --out"
            if isinstance(error, KeyboardInterrupt):
                raise _Interrupted(f"lvmjax: interrupted; {where}") from None
            raise type(error)(f"{error.template} {where}.") from None
        progress.close()
        if not writes:
            return 0
        app.finish_run(run_dir, result)
    _warn(result, args.flag_of)
    if not args.quiet:
        last = result.history[-1]["train_objective"]
        print(
            f"trained {config.model} on {dataset.name} in {result.seconds:.1f}s ({len(result.history)} "
            f"{spec.history_unit}s, final training objective {last:.3f}); wrote {run_dir}",
            file=sys.stderr,
        )
    return 0


class _StageProgress:
    """One progress bar per tour stage on a terminal, a line per stage otherwise, nothing with --quiet."""

    def __init__(self, quiet: bool):
        self.quiet, self.bar = quiet, None
        self.tasks: dict[str, Any] = {}
        self.started: dict[str, float] = {}
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("{task.description:<22}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self.bar.start()

    def __call__(self, stage: str, done: int, total: int, status: str):
        if self.bar is not None:
            if stage not in self.tasks:
                self.tasks[stage] = self.bar.add_task(stage, total=total, status=status)
            self.bar.update(self.tasks[stage], completed=done, total=total, status=status)
        elif not self.quiet:
            import time

            self.started.setdefault(stage, time.perf_counter())
            if done == total and stage not in self.tasks:
                self.tasks[stage] = None  # reported
                print(f"{stage}: done in {time.perf_counter() - self.started[stage]:.1f}s", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.stop()


# The quick tour trains for a few epochs: most of its time goes into compiling some 140 XLA
# programs, and without LLVM's expensive passes they build in half the time.
QUICK_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def _tour(args) -> int:
    if args.quick:
        # XLA reads its flags when its backend starts: in an `lvmjax` process, after this line.
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {QUICK_XLA_FLAGS}".strip()
    from lvmjax import tour

    progress = _StageProgress(args.quiet)
    try:
        metrics = tour.run_tour(
            args.out, data=args.data, quick=args.quick, seed=args.seed, progress=progress, overwrite=args.overwrite
        )
    finally:
        progress.close()
    print(tour.format_table(metrics))
    if not args.quiet:
        print(f"wrote {Path(args.out).absolute() / 'report.html'}", file=sys.stderr)
    return 0


def _evaluate(args) -> int:
    progress = _BatchProgress(f"evaluate {args.run_dir}", args.quiet)
    try:
        report = app.evaluate_run(
            args.run_dir,
            num_samples=args.num_samples,
            data_dir=args.data_dir,
            progress=progress,
            estimator=args.estimator,
            ais_steps=args.ais_steps,
            ais_chains=args.ais_chains,
            bdmc=args.bdmc,
        )
    finally:
        progress.close()
    if args.json:
        print(json.dumps(report))
    else:
        for name, value in report.items():
            if isinstance(value, dict):  # a section (the diagnostics, BDMC): one line per entry, lists left out
                print(f"{name:>22}")
                for entry, inner in value.items():
                    if not isinstance(inner, list) and inner is not None:
                        print(f"{entry:>30}  {_shown(inner)}")
                continue
            print(f"{name:>22}  {_shown(value)}")
    return 0


def _shown(value: Any) -> Any:
    return f"{value:.4f}" if isinstance(value, float) else value


def _outputs(out: str | None, default: Path, overwrite: bool) -> tuple[Path, Path]:
    """FILE.png and FILE.npy; refused if either exists, unless `overwrite`."""
    figure = Path(out) if out is not None else default
    if figure.suffix.lower() != ".png":
        raise RunError(f"--out must name a .png file (the array goes beside it as .npy), got {figure}.")
    array = figure.with_suffix(".npy")
    for path in (figure, array):
        if path.is_dir() or (path.exists() and not overwrite):
            raise RunError(f"{path} already exists; choose another --out or add --overwrite (nothing was changed).")
    if not figure.parent.is_dir():
        raise RunError(f"{figure.parent} is not a directory; --out must be a file in an existing directory.")
    return figure, array


def _save_array(path: Path, array) -> None:
    """np.save, atomically."""
    import numpy as np

    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as file:
        np.save(file, np.asarray(array))
    partial.replace(path)


def _sample(args) -> int:
    import jax

    from lvmjax import plots
    from lvmjax.app import figures

    run = app.load_run(args.run_dir)
    figure_path, array_path = _outputs(args.out, Path(args.run_dir) / "samples.png", args.overwrite)
    images = figures.generate(jax.random.key(args.seed), run, args.num, draw=args.draw)
    _save_array(array_path, images)
    written = [array_path]
    if run.image_shape is not None:
        plots.save(figures.samples_figure(run, images, args.draw), figure_path)
        written.insert(0, figure_path)
    kind = "images" if run.image_shape is not None else "sequences" if _takes_sequences(run.spec) else "datapoints"
    print(f"{args.num} {kind} generated by {run.config.model}; wrote {' and '.join(map(str, written))}")
    return 0


def _impute(args) -> int:
    import jax
    import numpy as np

    from lvmjax import plots
    from lvmjax.app import figures

    run = app.load_run(args.run_dir)
    run.spec.require("impute")  # before any mask is drawn: say first if the model cannot impute at all
    if args.method == "mcmc" and run.spec.impute_by_mcmc is None:
        raise RunError(
            f"--method mcmc draws a continuous z by NUTS, for {_names(lambda spec: spec.impute_by_mcmc is not None)}; "
            f"{run.config.model} imputes with --method is."
        )
    default = Path(args.run_dir) / f"imputation-{args.mask}.png"
    figure_path, array_path = _outputs(args.out, default, args.overwrite)
    dataset = app.load_run_data(run, args.run_dir, args.data_dir)
    key_mask, key_impute = jax.random.split(jax.random.key(args.seed))
    observed = applications.observed_mask(args.mask, run.data_dim, run.image_shape, key_mask)
    truth = dataset.test[: args.num_images]
    imputed = figures.impute(key_impute, run, truth, observed, args.num_samples, args.method)
    _save_array(array_path, imputed)
    written = [array_path]
    if run.image_shape is not None:
        labels = dataset.test_labels[: len(truth)] if dataset.test_labels is not None else None
        plots.save(figures.imputation_figure(run, truth, observed, imputed, args.mask, labels), figure_path)
        written.insert(0, figure_path)
    error = figures.squared_error(imputed, truth, observed)
    baseline = figures.squared_error(np.broadcast_to(dataset.train.mean(axis=0), truth.shape), truth, observed)
    print(
        f"imputed {args.mask} of {len(truth)} test datapoints under {run.config.model}: mean squared error "
        f"{error:.4f} on the missing entries (the training mean: {baseline:.4f}); "
        f"wrote {' and '.join(map(str, written))}"
    )
    return 0


def _plot(args) -> int:
    import jax

    from lvmjax.app import figures

    run = app.load_run(args.run_dir)
    out = Path(args.out) if args.out is not None else Path(args.run_dir) / "figures"
    if out.exists() and not out.is_dir():
        raise RunError(f"{out} is a file; --out must be a directory.")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise RunError(f"{out} already holds files; choose another --out or add --overwrite (nothing was changed).")
    dataset = app.load_run_data(run, args.run_dir, args.data_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = figures.plot_run(jax.random.key(args.seed), run, args.run_dir, dataset, out)
    for path in written.values():
        print(path)
    return 0


_DEFAULT_SIZES = {"components": list(range(1, 11)), "latent_dim": list(range(1, 6))}


def _select(args) -> int:
    spec = registry.get(args.model)
    sizes = {"components": args.components, "latent_dim": args.latent_dim}
    for name, given in sizes.items():
        if given is not None and spec.selection not in (None, name):
            raise RunError(f"{spec.name} is sized by {{{spec.selection}}}, not {{{name}}}.")
    base = app.FitConfig(
        model=args.model,
        data=_data(args.data),
        data_dir=args.data_dir,
        seed=args.seed,
        max_iter=args.max_iter,
        n_init=args.n_init,
        reg_covar=_reg_covar(args),
        prior=args.prior,
        covariance=args.covariance[0] if args.covariance else app.FitConfig.covariance,
        test_fraction=args.test_fraction,
        precision=args.precision,
    )
    field = spec.selection
    candidate_sizes = (sizes[field] or _DEFAULT_SIZES[field]) if field else []
    candidates = app.candidate_configs(base, candidate_sizes, args.covariance)
    app.check_new_run_dir(args.out)
    dataset = app.load_data(base)
    progress = _Progress(len(candidates) + 1, f"select {spec.name}", args.quiet)

    def candidate_done(done: int, total: int, candidate) -> None:
        progress.step(done, f"{spec.size(candidate.config)} {candidate.config.covariance if args.covariance else ''}")

    try:
        selection = app.select(candidates, dataset, args.criterion, args.validation_fraction, candidate_done)
        progress.step(len(candidates) + 1, "the chosen one on the whole training split")
    finally:
        progress.close()
    run_dir = app.save_selection(args.out, selection)
    _warn(selection.result, args.flag_of)
    report = app.selection.report(selection)
    if args.json:
        chosen = report.pop("chosen")
        print(json.dumps(report | {"run_dir": str(run_dir), "chosen": chosen}))  # "chosen" last
        report["chosen"] = chosen
    else:
        settings = [name for name in report["chosen"]]
        header = [*settings, "BIC", "held-out LL", "collapsed"]
        print("  ".join(f"{name:>12}" for name in header))
        for row in report["candidates"]:
            collapsed = "" if row["collapsed_components"] is None else row["collapsed_components"]
            cells = [*(row[name] for name in settings), f"{row['bic']:.2f}", f"{row['heldout_log_likelihood']:.4f}"]
            mark = "  chosen" if row["chosen"] else ""
            print("  ".join(f"{cell!s:>12}" for cell in [*cells, collapsed]) + mark)
    if not args.quiet:
        chosen = ", ".join(f"{name} {value}" for name, value in report["chosen"].items())
        print(
            f"chose {chosen} of {len(candidates)} candidates by {args.criterion} ({selection.num_fit} fitting, "
            f"{selection.num_validation} validation datapoints); wrote {run_dir}",
            file=sys.stderr,
        )
    return 0


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of `parser` and of its subcommands."""
    options = set()
    for action in parser._actions:
        options |= set(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                options |= _option_strings(subparser)
    return options


def _flags(parser: argparse.ArgumentParser):
    """`name_of(argument)` for `LvmjaxError.render`: the flag of a library argument named in an error, or the
    argument's own name where this command line has no flag for it (as in Python)."""
    options = _option_strings(parser)

    def name_of(argument: str) -> str:
        flag = "--out" if argument in ("run_dir", "out_dir") else "--" + argument.replace("_", "-")
        return flag if flag in options else argument

    return name_of


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.flag_of = _flags(parser)  # for the messages that name arguments
        commands = {
            "tour": _tour,
            "fit": _fit,
            "evaluate": _evaluate,
            "sample": _sample,
            "impute": _impute,
            "plot": _plot,
            "select": _select,
        }
        return commands[args.command](args)
    except _UsageError as error:
        print(error, file=sys.stderr)
    except LvmjaxError as error:
        print(f"lvmjax: error: {' '.join(error.render(_flags(parser)).split())}", file=sys.stderr)
    except OSError as error:  # the user's file system: a permission, a full disk, a missing directory
        print(f"lvmjax: error: {error.strerror or error}: {error.filename or ''}".rstrip(": "), file=sys.stderr)
    except _Interrupted as interrupted:
        print(interrupted, file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("lvmjax: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception:  # not the user's input: a bug, shown in full
        traceback.print_exc()
        print(
            "lvmjax: internal error: this is a bug in lvmjax, not a problem with your input; please report it "
            "with the command you ran and the traceback above.",
            file=sys.stderr,
        )
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
