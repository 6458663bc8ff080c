"""The data of a run: binary for the Bernoulli models, real-valued for the Gaussian ones, sequences for the
sequence models, word counts for the topic models."""

from __future__ import annotations

from lvmjax import _validation, text, time_series
from lvmjax import data as data_lib
from lvmjax.app import registry
from lvmjax.app.config import FitConfig
from lvmjax.app.spec import DataKind
from lvmjax.errors import RunError

__all__ = ["load_data"]


def load_data(config: FitConfig, data_dir: str | None = None) -> data_lib.Dataset:
    """The dataset of `config`, in the kind its model takes (`ModelSpec.data_kind`).

    Grey-level images (mnist, fashion-mnist) become binary for the Bernoulli models
    by dynamic binarization: the models trained over epochs draw each training
    minibatch afresh (`data.binarize`; `Dataset.grey_levels` stays True), the others
    see one fixed binarization; the test split is always one fixed draw
    (`data.binarize_split`), so that test metrics are reproducible (Burda et al. 2016).
    Sequence models read `time_series.load_sequences`, the topic models `text.load_corpus`.
    Then the spec's `prepare`, if any.
    """
    spec = config.spec
    dataset = _load(config, data_dir)
    return spec.prepare(config, dataset) if spec.prepare is not None else dataset


def _load(config: FitConfig, data_dir: str | None) -> data_lib.Dataset:
    spec = config.spec
    assert config.data is not None  # FitConfig fills in its data kind's default
    if spec.data_kind is DataKind.SEQUENCES:
        return time_series.load_sequences(config.data, config.test_fraction, config.seed)
    if spec.data_kind is DataKind.COUNTS:
        return text.load_corpus(config.data, config.test_fraction, config.seed, config.min_df, config.max_df)
    real = spec.data_kind is DataKind.REAL
    dataset = data_lib.load_dataset(
        config.data,
        data_dir if data_dir is not None else config.data_dir,
        continuous=real,
        test_fraction=config.test_fraction,
        seed=config.seed,
    )
    if not real and dataset.grey_levels:
        test = data_lib.binarize_split(dataset.test)
        if spec.checkpointed:
            return dataset._replace(test=test)
        return dataset._replace(train=data_lib.binarize_split(dataset.train), test=test, binary=True, grey_levels=False)
    if not real:
        # Both splits: the test split's log p(x) of a Bernoulli model is no probability for grey levels.
        _validation.check_binary(dataset.train, f"the training split of {dataset.name}")
        _validation.check_binary(dataset.test, f"the test split of {dataset.name}")
    elif dataset.binary:
        binary = ", ".join(other.name for other in registry.specs() if other.data_kind is DataKind.BINARY)
        raise RunError(
            f"{config.model} models real-valued data, but every value of {dataset.name} is 0 or 1 "
            f"(a Gaussian fitted to it collapses onto the corners); use a binary model ({binary})."
        )
    return dataset
