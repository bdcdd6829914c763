"""Sequence models and baselines: plain torch.nn modules with `loss(batch)` for `handbook.train.fit`.

| model | file | paper | scores items by |
| --- | --- | --- | --- |
| `MostPopular` | popularity.py | baseline | training popularity |
| `SASRec` | sasrec.py | baseline | dot product with item-id embeddings (`scores`) |
| `TIGER` | tiger.py | TIGER / GRID | encoder-decoder + beam search over SIDs (`recommend`) |
| `DecoderOnly` | decoder_only.py | GRID | causal LM + beam search over SIDs (`recommend`) |
| `RPG` | rpg.py | RPG | parallel digit heads: exact `scores` or graph decoding |
| `ACERec` | acerec.py | ACERec | merged SID latents + intent token: exact holistic `scores` |
"""

from handbook.models.acerec import ACERec
from handbook.models.decoder_only import DecoderOnly
from handbook.models.popularity import MostPopular
from handbook.models.rpg import RPG
from handbook.models.sasrec import SASRec
from handbook.models.tiger import TIGER

__all__ = ["RPG", "TIGER", "ACERec", "DecoderOnly", "MostPopular", "SASRec"]
