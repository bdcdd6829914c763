"""Decoding: from a trained model's outputs back to ranked items.

- `handbook.decoding.beam`: beam search over SID tokens, constrained by the prefix trie or free (TIGER, GRID).
- `handbook.decoding.graph`: graph-constrained parallel decoding over an item k-NN graph (RPG).
"""
