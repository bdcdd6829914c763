"""Efficiency study: latency, throughput, training speed and peak memory of the SID models.

    python -m handbook.bench                      # make bench: the full grid, bench/results-<device>.json
    python -m handbook.bench --quick              # reading size (notebook 10), into runs/bench/
    python -m handbook.bench --device cuda --out bench/

What is measured, on the package's own models, untrained (latency does not depend on
the weights' values) and at the papers' dimensions by default:

* inference, per user, at batch 1 (latency) and at a batch of `batch_size` users
  (throughput), for four ways of turning a history into a top-k list:
  `tiger_beam` (TIGER, 3 digits x 256 codes + the de-duplication digit, constrained beam
  search through `TIGER.recommend`, history 20 items), `rpg_exact` (RPG, OPQ-like codes of
  m digits x 256, every item scored by `RPG.scores`, then top-k, history 50),
  `rpg_graph` (RPG's digit log-probs, then `handbook.decoding.graph.graph_decode`, 20
  beams / 200 edges / 3 steps by default) and `acerec_exact` (ACERec, k = 4 latents and an
  intent token per item, every item scored by `ACERec.scores` from the digit log-probs, then top-k);
* along three axes: catalogue size (10k, 100k, 1M items, every method), beam size
  (TIGER beams, graph-decoding beams) and SID length m (RPG and ACERec);
* training throughput: samples (training rows) and targets (labelled next items) per
  second of AdamW steps on `model.loss(batch)`, batches from the models' `make_batches`,
  in fp32 and under bf16 autocast (`train_precisions`), after a matmul timed in both (on a
  CPU without native bf16 the bf16 cells are skipped, the matmul saying why);
* peak memory of each measurement, above what was held before it (model, catalogue,
  graph): `torch.cuda.max_memory_allocated` on CUDA; on CPU the peak resident set size
  polled every millisecond by a thread (psutil), after `malloc_trim` has given freed
  memory back, so an approximation that can miss very short peaks;
* what is built once per catalogue, apart: the SID table with its trie and the item graph.

Records have a `kind`: "inference", "uncached" (TIGER without its KV cache), "training" (with
its `precision`), "matmul" (the fp32 / bf16 probe), "build".

Catalogues are made by sampling codes uniformly at random per digit (`sample_codes`,
seeded). Choices a reader should know about, because the package's defaults would not
fit a benchmark of 1M items on a CPU:

* **graph**: `SemanticIDs.knn_graph` is exact and O(n_items^2) (about 10 s for 10k
  items at m = 32 on a 2-core CPU, so a day or more at 1M). Graph decoding's cost depends on the
  number of beams, edges and steps, not on how the edges were found, so the decoding
  cells use a random graph (`random_graph`: `n_edges` uniform random other items per
  item). The exact graph's build time is measured for catalogues up to
  `exact_graph_max_items` and extrapolated quadratically above (records with
  `estimated: true`).
* TIGER's beam search runs on its KV cache (`handbook.models.tiger`): the encoder's
  cross-attention keys and values once per user, shared by its beams, and the prefix's
  self-attention keys and values reordered with the beams, so each digit runs the decoder
  on one new token per beam. The beam axis is timed a second time with
  `recommend(..., cache=False)`, which reruns the decoder over the whole prefix (records of
  kind "uncached", `tiger_uncached=False` to skip them). `graph_decode` keeps a
  (batch, n_items) visited mask on every call, measured as it is. The bench's own graph is
  valid by construction, so its per-call range check (`check=False`) is skipped.
* `threads` (`--threads`) sets torch's CPU threads for the run (recorded in the machine
  description). On a machine whose cores are busy with other processes, fewer threads
  than cores avoid oversubscription, which can make small operations 100x slower.

A cell that cannot run is recorded with `status: "skipped"` and its reason, never left
out: a resource error (out of memory), a graph that would not fit in memory, or a batched
call whose estimated time (batch-1 latency x batch size) exceeds `max_call_s`.

The package, one file per concept: `config` (sizes and the cells they ask for), `catalogue`
(sampled codes, SID tables, random graphs), `measure` (timing and peak memory), `decoding`
(the inference cells), `training` (the training cells), `run` (`run_bench`), `report`
(machine description, results files, tables), `plots` (figures), `cli` (the command line of `python -m handbook.bench`).
"""

from handbook.bench.catalogue import random_graph, sample_codes
from handbook.bench.cli import main
from handbook.bench.config import (
    AXIS_METHODS,
    METHODS,
    TRAIN_METHODS,
    BenchConfig,
    missing_cells,
    requested_cells,
)
from handbook.bench.decoding import exact_top_k, measure_inference
from handbook.bench.measure import PeakMemory, time_calls
from handbook.bench.plots import plot_axis, plot_overview, plot_pair, plot_training
from handbook.bench.report import (
    AXIS_LABELS,
    METHOD_LABELS,
    SCHEMA_VERSION,
    axis_series,
    axis_table,
    compare_cells,
    describe_machine,
    device_slug,
    kv_cache_table,
    load_results,
    machine_info,
    precision_table,
    read_results,
    records_frame,
    write_results,
)
from handbook.bench.run import run_bench
from handbook.bench.training import measure_training

__all__ = [
    "AXIS_LABELS",
    "AXIS_METHODS",
    "METHODS",
    "METHOD_LABELS",
    "SCHEMA_VERSION",
    "TRAIN_METHODS",
    "BenchConfig",
    "PeakMemory",
    "axis_series",
    "axis_table",
    "compare_cells",
    "describe_machine",
    "device_slug",
    "exact_top_k",
    "kv_cache_table",
    "precision_table",
    "load_results",
    "machine_info",
    "main",
    "measure_inference",
    "measure_training",
    "missing_cells",
    "plot_axis",
    "plot_overview",
    "plot_pair",
    "plot_training",
    "random_graph",
    "read_results",
    "records_frame",
    "requested_cells",
    "run_bench",
    "sample_codes",
    "time_calls",
    "write_results",
]
