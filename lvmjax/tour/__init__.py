"""The tour: every model of lvmjax fitted to one dataset, evaluated, compared and drawn in one report.

    metrics = run_tour("tour")               # what `lvmjax tour --out tour` calls
    print(format_table(metrics))

On one train/test split of the digits it fits the seed texts' models in their order:
the mixture of Bernoullis (EM) on the binary images; the Gaussian mixture and factor
analysis (EM) on the dequantized ones; then, on the binary images, the deterministic
autoencoder, the VAE (amortized inference), the IWAE (K = 50), non-amortized SVI (one
φ_i per training image) and the semi-amortized VAE (the encoder's φ(x) refined per test
image); and, on the Nile's annual flow (1871–1970), a hidden Markov model beside its
one-state baseline, which finds the series' change point. Every model is trained by
`app.fit` and evaluated by `app.evaluate`, the code behind `lvmjax fit` and `lvmjax
evaluate`, and what it can do comes from its spec in `lvmjax.app.registry`.

It then shows, on the trained VAE, how the estimators of log p(x) behave as K grows
(naive Monte Carlo from the prior, importance sampling from the encoder's q, the IWAE
bound; seed text §3.2), and what the models are for: samples, reconstructions,
interpolations, imputation of a missing upper half, the latent space and anomaly
scores. The directory it writes holds report.html (self-contained), report.md,
metrics.json and the figures as PNG; it is written whole at the end or not at all.

One module per job: `run` (the stages and the report directory), `experiments` (the
budgets, the configurations and what is measured), `figures` (the figures and their
captions), `markdown` (the table and the report's blocks, in Markdown), `html` (the
self-contained page) and `machine` (what ran it).
"""

from lvmjax.tour.experiments import (
    FULL,
    QUICK,
    RICH_VAE,
    SEMI_AMORTIZED,
    SEQUENCE_MODEL,
    TOPIC_MODELS,
    TOUR_MODELS,
    TourSettings,
)
from lvmjax.tour.figures import FIGURES
from lvmjax.tour.machine import machine_info
from lvmjax.tour.markdown import format_table
from lvmjax.tour.run import Progress, run_tour

__all__ = [
    "FIGURES",
    "FULL",
    "QUICK",
    "RICH_VAE",
    "SEMI_AMORTIZED",
    "SEQUENCE_MODEL",
    "TOPIC_MODELS",
    "TOUR_MODELS",
    "Progress",
    "TourSettings",
    "format_table",
    "machine_info",
    "run_tour",
]
