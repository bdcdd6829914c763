"""The package behind the Semantic-ID Generative Recommendation Handbook notebooks."""

__version__ = "0.1.0"
