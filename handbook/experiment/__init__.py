"""Paper-setting experiments end to end, one results file per model: `make reproduce`.

    python -m handbook.experiment amazon2014:Beauty                     # every model
    python -m handbook.experiment ../shared/data/amazon2014/Beauty --models tiger,rpg
    python -m handbook.experiment ml-100k -o epochs=1 -o hidden=32     # a smoke run
    torchrun --nproc_per_node=4 -m handbook.experiment amazon2014:Beauty --models rpg

For each model: load and 5-core the dataset (leave-one-out split), embed the item texts
(cached), build the semantic IDs (TIGER: RQ-VAE 3 x 256 plus the de-duplication digit;
RPG and ACERec: PCA whitening and OPQ m x 256 fitted on the training items), train at the paper's
settings with `handbook.train.fit` (early stopping on validation NDCG@10), evaluate on
the test split (full ranking; TIGER: constrained beam search, beam 20; RPG: graph decoding as
the paper reports it, with exact scoring beside it) and write
`<out>/<dataset>/<model>.json` atomically. `-o NAME=VALUE` overrides any value of the
configs below; a model that fails is reported, the others still run, and the exit code
is then 1. Under torchrun only rank 0 evaluates on test and writes. With `--checkpoints DIR`
(`make reproduce` passes `checkpoints/`) a run that is killed resumes after its last finished
epoch when the same command is run again, with the same number of threads (faiss fits other OPQ
codes with other threads; a resume over other codes is refused).

Every value of the configs says where it comes from. Where a paper is silent the
authors' code decides; the item text encoder is the one exception: the papers' encoders
(sentence-T5, text-embedding-3-large) are not available offline, so all-MiniLM-L6-v2
stands in (override `embed_model` with any sentence-transformers name or path).
"""

# One file per concept: `configs` (the paper configs and published numbers), `overrides`
# (`make_config` and -o NAME=VALUE), `datasets` (loading and splitting, item embeddings), `recipes`
# (how each model is built, batched and evaluated), `run` (`run_experiment`, `run_all`), `compare`
# (the table and paired intervals), `cli` (the command line, `--dry-run`). The docstring above is
# the command line's --help, so this map is a comment. Names with a leading underscore
# (`_check_model`, `_embeddings`) are shared between these files but not part of the API.

from handbook.experiment.cli import DRY_RUN_TFLOPS, dry_run, main
from handbook.experiment.compare import paired_differences, print_comparison, summary_table
from handbook.experiment.configs import (
    ACEREC_CONFIG,
    ACEREC_GRID,
    ACEREC_PUBLISHED,
    ACEREC_PUBLISHED_ABLATIONS,
    CONFIGS,
    DATA,
    METRICS,
    MODELS,
    PUBLISHED,
    RPG_CONFIG,
    RPG_PER_DATASET,
    SASREC,
    TIGER_CONFIG,
)
from handbook.experiment.datasets import PreparedData, dataset_slug, prepare_dataset
from handbook.experiment.overrides import make_config, parse_overrides
from handbook.experiment.recipes import RECIPES, Recipe
from handbook.experiment.run import (
    command_line,
    git_commit,
    ranks_name,
    run_all,
    run_experiment,
    write_ranks,
)

__all__ = [
    "ACEREC_CONFIG",
    "ACEREC_GRID",
    "ACEREC_PUBLISHED",
    "ACEREC_PUBLISHED_ABLATIONS",
    "CONFIGS",
    "DATA",
    "DRY_RUN_TFLOPS",
    "METRICS",
    "MODELS",
    "PUBLISHED",
    "RECIPES",
    "RPG_CONFIG",
    "RPG_PER_DATASET",
    "SASREC",
    "TIGER_CONFIG",
    "PreparedData",
    "Recipe",
    "command_line",
    "dataset_slug",
    "dry_run",
    "git_commit",
    "main",
    "make_config",
    "paired_differences",
    "parse_overrides",
    "prepare_dataset",
    "print_comparison",
    "ranks_name",
    "run_all",
    "run_experiment",
    "summary_table",
    "write_ranks",
]
