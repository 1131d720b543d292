"""Typed parameters of the dedup stages (pydantic v2, ``extra="forbid"``).

Defaults follow datatrove's ``MinhashConfig``: word 5-grams, 14 bands of 8 hashes (112 permutations), which
puts the LSH threshold at (1/14)^(1/8) ~ 0.72 Jaccard. Departure: our minhash values are 32-bit (datatrove
defaults to 64-bit); with 8 values per band a chance collision of a whole band is ~2^-256, so the width only
costs memory.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TextNormParams(BaseModel):
    """Which normalisation steps run before shingling or exact hashing (datatrove's ``TextNormConfig``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lowercase: bool = True
    norm_numbers: bool = Field(
        True, description="replace every number (digits, optional decimal part) by '0'"
    )
    remove_punctuation: bool = Field(
        True, description="turn punctuation, symbols and control characters to spaces"
    )
    norm_whitespace: bool = Field(
        True, description="collapse runs of whitespace into one space, strip the ends"
    )
    norm_unicode_diacritics: bool = Field(True, description="NFD-decompose and drop combining marks (Mn)")


class MinHashParams(BaseModel):
    """Parameters of MinHash near-duplicate detection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_grams: int = Field(5, ge=1, le=64, description="words per shingle")
    num_bands: int = Field(14, ge=1, le=1024, description="LSH bands (datatrove: num_buckets)")
    rows_per_band: int = Field(8, ge=1, le=64, description="hashes per band (datatrove: hashes_per_bucket)")
    seed: int = Field(
        1, ge=0, description="seed of the permutation parameters; must be equal on every worker"
    )
    norm: TextNormParams = Field(default_factory=TextNormParams)
    batch_bytes: int = Field(
        1 << 20, ge=1 << 12, description="normalised UTF-8 bytes hashed per vectorised batch (memory bound)"
    )

    @property
    def num_perm(self) -> int:
        """Number of permutations, i.e. the signature width."""
        return self.num_bands * self.rows_per_band

    @property
    def threshold(self) -> float:
        """Jaccard similarity at which a pair becomes a candidate with probability about one half."""
        return (1.0 / self.num_bands) ** (1.0 / self.rows_per_band)


class ExactDedupParams(BaseModel):
    """Parameters of exact dedup on normalised text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    norm: TextNormParams = Field(default_factory=TextNormParams)
