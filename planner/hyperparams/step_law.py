"""Step Law (Li et al. 2025, "Predictable Scale: Part I — Optimal Hyperparameter Scaling Law in
Large Language Model Pretraining"): the loss-optimal peak learning rate and batch size of a
dense LM as power laws,

    lr*(N, D)  = a · N^alpha · D^beta
    batch*(D)  = b · D^gamma                (tokens)

with N the non-embedding parameters and D the training tokens. The batch does not depend on N.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.validation import finite, positive


@dataclass(frozen=True)
class StepLaw:
    """lr* = lr_coefficient · N^lr_params_exponent · D^lr_tokens_exponent;
    batch* = batch_coefficient · D^batch_tokens_exponent (tokens)."""

    lr_coefficient: float
    lr_params_exponent: float
    lr_tokens_exponent: float
    batch_coefficient: float
    batch_tokens_exponent: float

    def __post_init__(self) -> None:
        positive("step_law.lr_coefficient", self.lr_coefficient)
        finite("step_law.lr_params_exponent", self.lr_params_exponent)
        finite("step_law.lr_tokens_exponent", self.lr_tokens_exponent)
        positive("step_law.batch_coefficient", self.batch_coefficient)
        finite("step_law.batch_tokens_exponent", self.batch_tokens_exponent)

    def learning_rate(self, params: float, tokens: float) -> float:
        """The loss-optimal peak learning rate for N non-embedding params trained on D tokens."""
        n = positive("params", params)
        d = positive("tokens", tokens)
        return float(self.lr_coefficient * n**self.lr_params_exponent * d**self.lr_tokens_exponent)

    def batch_tokens(self, tokens: float) -> float:
        """The loss-optimal batch size, in tokens, for a run of D tokens."""
        d = positive("tokens", tokens)
        return float(self.batch_coefficient * d**self.batch_tokens_exponent)


# The authors' mean fit over 1,000 bootstrap resamples (paper and step-law/steplaw README;
# shared/data/README.md). Their example: N = 7e9, D = 1.4e12 -> lr 9.35e-4, batch 5.0e6 tokens.
PUBLISHED_STEP_LAW = StepLaw(
    lr_coefficient=1.797,
    lr_params_exponent=-0.7129,
    lr_tokens_exponent=0.3075,
    batch_coefficient=0.5807,
    batch_tokens_exponent=0.5709,
)
