"""The paper configuration of every model, each value with its source, and the published numbers.

`CONFIGS` maps a model name to its paper config (`make_config` in `overrides` adds the dataset's
values, a profile's and the user's overrides); `PUBLISHED` holds the papers' test numbers that
each results file records beside ours.
"""

from __future__ import annotations

from typing import Any

from handbook.embed import DEFAULT_MODEL

# Shared by every model.
DATA = {
    "k_core": 5,  # users and items with >= 5 interactions: the papers' Amazon 2014 "5-core"
    "embed_model": DEFAULT_MODEL,  # offline stand-in for sentence-T5 (TIGER) / text-embedding-3-large (RPG)
    "eval_batch_size": 256,  # users per evaluation batch (speed only)
    "amp": False,  # the papers train in fp32 (GRID: precision 32-true); "bf16" is faster on a GPU
    # validate every epoch, as the references do; a long CPU run may validate every few epochs
    # (patience then counts validations, not epochs)
    "eval_every": 1,
}

# SASRec (Kang & McAuley, ICDM 2018, Sec. IV-C) unless said otherwise. The handbook's SASRec
# trains with full-softmax cross-entropy, the stronger variant recent papers use.
SASREC = {
    **DATA,
    "max_len": 50,  # n = 50 on the Amazon datasets
    "hidden": 50,  # d = 50
    "n_layers": 2,  # b = 2 self-attention blocks
    "n_heads": 1,  # one head ("multi-head did not help")
    "dropout": 0.5,  # 0.5 on the sparse datasets (Beauty, Games, Steam), 0.2 on MovieLens-1M
    "batch_size": 128,  # 128
    "lr": 1e-3,  # Adam, 0.001
    "optimizer": "adam",  # Adam; with no weight decay the same steps as AdamW
    "weight_decay": 0.0,  # no L2 on the embeddings (the authors' l2_emb = 0)
    "grad_clip": None,  # the authors' code does not clip
    "schedule": "constant",
    "warmup_steps": 0,
    "epochs": 200,  # the paper trains 200 epochs
    "patience": 20,  # not in the paper: the RPG trainer's default, with the same evaluation protocol
}

# TIGER (Rajput et al., NeurIPS 2023, Sec. 4) for the tokenizer and the architecture; the
# optimisation follows GRID's reference code (snap-research/GRID,
# configs/experiment/tiger_train_flat.yaml). TIGER's own recipe (lr 0.01 for 10k steps, then an
# inverse-square-root decay over 200k steps: schedule="inverse_sqrt") scored measurably lower at
# reading size over three seeds with AdamW, and GRID's no differently from the handbook's AdamW +
# cosine (notebook 11, section 7).
TIGER_CONFIG = {
    **DATA,
    "tokenizer": "rqvae",  # TIGER's RQ-VAE (GRID's RK-Means: override tokenizer=rkmeans)
    "n_levels": 3,  # 3 codebooks ...
    "width": 256,  # ... of 256 codes, + a 4th de-duplication digit (TIGER Sec. 3.1, GRID)
    "rqvae_hidden_dims": [512, 256, 128],  # encoder 512 -> 256 -> 128 -> latent, ReLU
    "rqvae_latent_dim": 32,  # latent and codebook dimension 32
    "rqvae_beta": 0.25,  # commitment weight 0.25
    "rqvae_epochs": 20000,  # 20k epochs
    "rqvae_batch_size": 1024,  # batch 1024
    "rqvae_lr": 1e-3,  # TIGER: Adagrad lr 0.4; the handbook's RQ-VAE uses Adam, at Adam's usual 1e-3
    "max_items": 20,  # histories truncated to the last 20 items
    # every prefix of a training sequence is a sample (TIGER's sliding windows); GRID's code trains
    # on every contiguous sub-sequence instead ("subsequences", n(n-1)/2 samples of n items), which,
    # drawn to the same number of steps, was measurably worse at reading size over 3 seeds
    # (chapter 11, on validation, each arm trained to its plateau: N@10 -.0127 [-.0201, -.0048])
    "augmentation": "prefixes",
    "d_model": 128,  # input dimension 128
    "n_heads": 6,  # 6 heads ...
    "head_dim": 64,  # ... of dimension 64
    "d_ff": 1024,  # MLP dimension 1024
    "n_layers": 4,  # 4 encoder and 4 decoder layers
    "dropout": 0.1,  # 0.1 (GRID's config: 0.15)
    # TIGER's T5 and GRID/cornac's T5 stacks use relative position bias ("relative"), GRID and
    # cornac one softmax per SID level ("per_level"), TIGER's T5 one over the vocabulary; neither
    # reference choice differed measurably from the handbook's first model ("absolute",
    # "full_vocab") at reading size over three seeds (notebook 11, section 7; tiger.py)
    "positions": "absolute",
    "output": "full_vocab",
    "n_user_bins": 0,  # TIGER hashes users into 2000 tokens; GRID's default has none (no gain)
    "batch_size": 256,  # TIGER: 256
    "lr": 1e-3,  # GRID: Adam lr 1e-3 ...
    "optimizer": "adam",  # ... (torch.optim.Adam: the weight decay is an L2 term in the gradient) ...
    "weight_decay": 1e-4,  # ... weight decay 1e-4 ...
    "schedule": "constant",  # ... and no schedule
    "warmup_steps": 0,
    "grad_clip": None,  # GRID's trainer does not clip
    "epochs": 400,  # ~200k steps of 256 on Beauty's ~131k samples (TIGER); early stopping ends sooner
    "patience": 10,  # GRID: stop after 10 validations without improvement
    "beam_size": 20,  # beam 20, constrained to valid SIDs, for metrics @5 and @10 (GRID)
}

# RPG (Hou et al., KDD 2025): the authors' code, facebookresearch/RPG_KDD2025 (genrec/default.yaml,
# genrec/models/RPG/config.yaml) and its README's per-dataset commands; Beauty's by default.
RPG_CONFIG = {
    **DATA,
    "n_digits": 32,  # n_codebook: 32 on Beauty (README)
    "nbits": 8,  # codebook_size 256
    "max_len": 50,  # max_item_seq_len
    "hidden": 448,  # n_embd
    "n_layers": 2,  # n_layer
    "n_heads": 4,  # n_head
    "ffn": 1024,  # n_inner
    "dropout": 0.5,  # embd_pdrop and attn_pdrop
    "resid_dropout": 0.0,  # resid_pdrop
    "temperature": 0.03,  # --temperature=0.03 in every README command (config.yaml: 0.07)
    "batch_size": 256,  # train_batch_size
    "lr": 0.01,  # --lr=0.01 on Beauty (README)
    "optimizer": "adamw",  # with weight decay 0, Adam and AdamW take the same steps
    "weight_decay": 0.0,  # weight_decay
    "schedule": "cosine",  # the trainer's get_scheduler("cosine", ...)
    "warmup_steps": 10000,  # warmup_steps
    "grad_clip": 1.0,  # max_grad_norm
    "epochs": 150,  # epochs
    "patience": 20,  # patience, on val_metric ndcg@10, evaluated every epoch
    "whiten": True,  # sent_emb_pca with PCA(whiten=True) before OPQ (tokenizer.py), here at full dimension
    # Not the reference's (random batches): batches of alike window lengths, trimmed of padding
    # (RPG.make_batches). On Beauty they keep 13% of the columns; the budgets turn it on.
    "bucket": False,
    # The paper's test numbers are graph-decoded (pipeline.py turns generate_w_decoding_graph on for
    # the test split only; validation, hence early stopping, scores exactly): graph decoding is the
    # headline `test`, exact scoring `test_exact` beside it. The values are the README's commands
    # as of its commit ceed035 ("Update best hyperparameters", July 2025), Beauty's by default.
    "graph_decoding": True,
    "num_beams": 20,  # --num_beams=20 on Beauty (README; config.yaml: 50)
    "n_edges": 200,  # --n_edges=200 on Beauty (README; config.yaml: 50)
    "propagation_steps": 3,  # --propagation_steps=3 on Beauty (README and config.yaml)
}

# The README's other Amazon categories (the handbook's dataset names are its folder names);
# every value is the README's command for that category (commit ceed035).
RPG_PER_DATASET = {
    "Sports_and_Outdoors": {
        "lr": 0.003,  # --lr=0.003
        "n_digits": 16,  # --n_codebook=16
        "num_beams": 100,  # --num_beams=100
        "n_edges": 30,  # --n_edges=30
        "propagation_steps": 5,  # --propagation_steps=5
    },
    "Toys_and_Games": {
        "lr": 0.003,  # --lr=0.003
        "n_digits": 16,  # --n_codebook=16
        "num_beams": 200,  # --num_beams=200
        "n_edges": 20,  # --n_edges=20
        "propagation_steps": 3,  # --propagation_steps=3
    },
    "CDs_and_Vinyl": {
        "lr": 0.001,  # --lr=0.001
        "n_digits": 64,  # --n_codebook=64
        "num_beams": 20,  # --num_beams=20
        "n_edges": 500,  # --n_edges=500
        "propagation_steps": 5,  # --propagation_steps=5
    },
}

# ACERec (Xia et al., arXiv 2602.13573) has no public code; public write-ups of its v1 (Feb 2026)
# and v2 (Aug 2026) report its settings. The model is aligned with RPG (2 layers, hidden 448, FFN
# 1024, 4 heads, MTP temperature 0.03) and uses the same m and k on every dataset, so nothing is
# taken from RPG_PER_DATASET; training settings the paper does not state are RPG's.
ACEREC_CONFIG = {
    **{k: v for k, v in RPG_CONFIG.items() if k not in ("graph_decoding", "num_beams", "n_edges", "propagation_steps")},
    "n_digits": 32,  # m = 32 OPQ digits of 256 codes on every Amazon 2014 dataset
    "n_latents": 4,  # k = 4 latents per item: compression ratio r = m / k = 8
    "merger": "attention",  # the Attentive Token Merger ("mean", "mlp", "conv": the ablation's variants)
    "intent_token": True,  # one intent token per item, the prediction anchor
    "isa_weight": 0.1,  # lambda, fixed at 0.1 while lr and batch are tuned, then searched (ACEREC_GRID)
    "isa_temperature": 0.07,  # tau of ISA's in-batch InfoNCE
    "logq_beta": 0.02,  # beta of ISA's logQ correction, from the items' training frequencies
    "recon_weight": 0.0,  # v1: no reconstruction loss; v2: alpha in {0.03, 0.05} (ACEREC_GRID)
    "lr": 0.003,  # the smaller of the paper's {0.003, 0.005}
    "batch_size": 256,  # the larger of the paper's {64, 256}
}
# The paper's two-stage search per dataset, checkpoints chosen by validation NDCG@10: lr x batch
# size at lambda = 0.1 (v2: alpha = 0.03), then lambda (v2: and alpha); 9 runs per dataset in v2.
# Its tables are means over 5 seeds.
ACEREC_GRID = {
    "lr": [0.003, 0.005],
    "batch_size": [64, 256],
    "isa_weight": [0.1, 0.15, 0.2],
    "recon_weight": [0.03, 0.05],
}

CONFIGS: dict[str, dict[str, Any]] = {
    "most-popular": {"k_core": DATA["k_core"], "eval_batch_size": DATA["eval_batch_size"]},
    "sasrec": SASREC,
    "tiger": TIGER_CONFIG,
    "rpg": RPG_CONFIG,
    "acerec": ACEREC_CONFIG,
}
MODELS = tuple(CONFIGS)

# ACERec's main table, R@10 and N@10 (arXiv 2602.13573, as the public write-ups of each version
# report it): "acerec" is v1 (Feb 2026; MTP + ISA, this config's default), "acerec-v2" is v2 (Aug
# 2026; + the reconstruction loss, recon_weight 0.03-0.05).
ACEREC_PUBLISHED: dict[str, dict[str, dict[str, float]]] = {
    "Beauty": {
        "acerec": {"recall@10": 0.0841, "ndcg@10": 0.0501},
        "acerec-v2": {"recall@10": 0.0856, "ndcg@10": 0.0513},
    },
    "Sports_and_Outdoors": {
        "acerec": {"recall@10": 0.0493, "ndcg@10": 0.0280},
        "acerec-v2": {"recall@10": 0.0494, "ndcg@10": 0.0287},
    },
    "Toys_and_Games": {
        "acerec": {"recall@10": 0.0916, "ndcg@10": 0.0579},
        "acerec-v2": {"recall@10": 0.0940, "ndcg@10": 0.0591},
    },
}

# v2's ablations on Toys, R@10 and N@10: the ladder from RPG adds one part at a time (v1's
# ACERec is the "+ ISA" rung), and the merger variants are each in the full model.
ACEREC_PUBLISHED_ABLATIONS: dict[str, dict[str, float]] = {
    "RPG": {"recall@10": 0.0777, "ndcg@10": 0.0454},
    "+ merger": {"recall@10": 0.0802, "ndcg@10": 0.0470},
    "+ intent token": {"recall@10": 0.0869, "ndcg@10": 0.0562},
    "+ ISA": {"recall@10": 0.0916, "ndcg@10": 0.0579},
    "+ reconstruction": {"recall@10": 0.0940, "ndcg@10": 0.0591},
    "merger mlp": {"recall@10": 0.0869, "ndcg@10": 0.0518},
    "merger mean": {"recall@10": 0.0890, "ndcg@10": 0.0563},
    "merger conv": {"recall@10": 0.0891, "ndcg@10": 0.0570},
}

# Test-split numbers published for Beauty (Amazon 2014, 5-core, leave-one-out, full ranking).
PUBLISHED: dict[str, dict[str, dict[str, float]]] = {
    "Beauty": {
        # TIGER, Table 2; RPG's table reprints it
        "tiger": {"recall@5": 0.0454, "ndcg@5": 0.0321, "recall@10": 0.0648, "ndcg@10": 0.0384},
        # RPG, Table 2 (m = 32)
        "rpg": {"recall@5": 0.0550, "ndcg@5": 0.0381, "recall@10": 0.0809, "ndcg@10": 0.0464},
        # SASRec as RPG's Table 2 reports it (the number TIGER's Table 2 reports)
        "sasrec": {"recall@5": 0.0387, "ndcg@5": 0.0249, "recall@10": 0.0605, "ndcg@10": 0.0318},
        **ACEREC_PUBLISHED["Beauty"],
    },
    "Sports_and_Outdoors": ACEREC_PUBLISHED["Sports_and_Outdoors"],
    "Toys_and_Games": ACEREC_PUBLISHED["Toys_and_Games"],
}
METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")


def _check_model(model: str) -> str:
    """The canonical model name, or a ValueError listing the valid ones."""
    name = str(model).strip().lower()
    if name not in CONFIGS:
        raise ValueError(f"unknown model {model!r}: choose from {', '.join(MODELS)}")
    return name
