"""Datasets and preprocessing: raw files -> per-user sequences with a leave-one-out split."""

from handbook.data.datasets import KNOWN_DATASETS, Dataset, load_dataset
from handbook.data.preprocess import (
    SequenceData,
    chronological,
    items_in_order,
    k_core,
    leave_one_out,
    prepare,
    samples_per_sequence,
    statistics,
    training_samples,
)

__all__ = [
    "KNOWN_DATASETS",
    "Dataset",
    "SequenceData",
    "chronological",
    "items_in_order",
    "k_core",
    "leave_one_out",
    "load_dataset",
    "prepare",
    "samples_per_sequence",
    "statistics",
    "training_samples",
]
