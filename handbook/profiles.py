"""Run profiles of `make reproduce`: the papers' settings, or budgets that fit a machine.

A profile is a set of overrides per model, applied on top of the paper configs of
`handbook.experiment` and under the user's own `-o` overrides. `paper` changes nothing.
`cpu` trains the five models on Amazon Beauty at sizes a 2-core CPU can run (the dry run
projects 65 minutes of training steps, evaluation not included; the README's Beauty table has
the measured runs); `gpu` at paper dimensions, RPG and ACERec at the reference's full schedule,
projected at about 6 minutes of training on one H100 or H200 (bf16), not yet run. Each results file records its
profile, and `python -m handbook.experiment <dataset> --profile P --dry-run` prints the
steps, the training FLOPs and a projected time of each model before anything trains.

Cutting epochs alone does not shrink a schedule: RPG's reference warms up for 10,000 of
its ~13,000 steps, so three epochs of it end before the learning rate peaks (N@10 .0020
on Beauty at hidden 128, below most-popular). Nor does scaling the warm-up down with the
steps: RPG then climbs to its peak within a few epochs and stays near its popularity plateau
(README, "RPG's popularity plateau on Beauty"). Each budget sets warm-up, peak and patience
for its step budget, as commented below.
RPG and ACERec train on length-bucketed, trimmed batches (`RPG.make_batches(bucket=True)`),
which skip most of the padding of Beauty's short sequences.
The sizes below come from step timings on this project's 2-core CPU (an RPG epoch at
hidden 128 takes about 31 s bucketed, a TIGER step at 4+4 layers d 128 4.3 s) and from
the dry run's FLOP counts for the GPU; the first run of each confirms or corrects them.
"""

from __future__ import annotations

from typing import Any

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {},
    "cpu": {
        # SASRec at paper size took 25 min on Beauty (best epoch 34 of 54): stop sooner.
        "sasrec": {"epochs": 30, "patience": 5},
        # TIGER at 4+4 layers d 128 is 37 min an epoch here: GRID's small 2+2 layers d 64, about
        # 5.5 min an epoch of 514 steps on one thread with denormals flushed (`handbook.device`).
        # Three epochs ended still rising; up to ten, stopping on validation.
        "tiger": {
            "n_layers": 2, "d_model": 64, "n_heads": 4, "head_dim": 16, "d_ff": 256,
            "rqvae_epochs": 200, "epochs": 10, "patience": 2,
        },  # fmt: skip
        # RPG at hidden 128: about 31 s a bucketed epoch of 88 steps. It first sits on a plateau
        # where it learns only how popular each code is (chapter 07). Measured on Beauty (README):
        # at the reference's peak lr 0.01 it barely leaves it in 40 epochs; 15 epochs at 0.002 end
        # on it; the reference's slow warm-up (lr under 0.001 for ten epochs) leaves it by epoch 10.
        # So a lower peak, reached slowly: lr 0.004 after 700 warm-up steps, 40 epochs.
        "rpg": {
            "hidden": 128, "ffn": 512, "lr": 0.004, "epochs": 40, "warmup_steps": 700, "eval_every": 4,
            "patience": 3, "bucket": True,
        },  # fmt: skip
        # ACERec reads k + 1 = 5 positions per item, five times RPG's: about 160 s an epoch. Eight
        # epochs ended still rising; sixteen (warm-up 10% of 1,408 steps, validated every 2) still
        # rise slowly at the cap (README).
        "acerec": {
            "hidden": 128, "ffn": 512, "epochs": 16, "warmup_steps": 140, "eval_every": 2, "patience": 3,
            "bucket": True,
        },  # fmt: skip
    },
    "gpu": {
        # bf16 autocast and large evaluation batches everywhere; step budgets from the dry run.
        "sasrec": {"amp": "bf16", "eval_batch_size": 4096, "epochs": 100, "patience": 10},
        "tiger": {"amp": "bf16", "eval_batch_size": 1024, "rqvae_epochs": 1000, "epochs": 15, "patience": 4},
        # RPG and ACERec at the reference's schedule (150 epochs, warm-up 10,000 steps, patience 20
        # epochs), a few minutes on a GPU: shorter ones at the peak lr stay near the popularity
        # plateau (cpu above). Validated every 5 epochs, patience 4 validations.
        "rpg": {"amp": "bf16", "eval_batch_size": 2048, "eval_every": 5, "patience": 4, "bucket": True},
        "acerec": {"amp": "bf16", "eval_batch_size": 2048, "eval_every": 5, "patience": 4, "bucket": True},
    },
}


def profile_overrides(profile: str, model: str) -> dict[str, Any]:
    """The overrides `profile` gives `model` ({} for a model it leaves at paper settings)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: choose from {', '.join(PROFILES)}")
    return dict(PROFILES[profile].get(model, {}))


def results_name(model: str, profile: str) -> str:
    """File name of a model's results: `<model>.json` at paper settings, `<model>-<profile>.json` otherwise."""
    return f"{model}.json" if profile == "paper" else f"{model}-{profile}.json"
