"""Published parameter sets, shipped as ready families in every fresh database (DESIGN.md §5).

Values and provenance are those of LAWS.md §1.4, §2.4, §3.1, §3.2 and §4.1 and the shared data
README (Step Law); each law records its citation and each family the parameter-count convention
its parameters were fitted with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from planner.forms import (
    CRITICAL_BATCH_FORM,
    STEP_LAW_FORM,
    AnyLaw,
    law_mapping,
    parse_any_law,
)
from planner.hyperparams import KAPLAN_CRITICAL_BATCH, PUBLISHED_STEP_LAW

TOTAL = "total"
NON_EMBEDDING = "non_embedding"


@dataclass(frozen=True)
class PublishedLaw:
    """One law version as a paper (or its released code) gives it."""

    form: str
    parameters: dict[str, float]
    citation: str
    note: str = ""

    def law(self) -> AnyLaw:
        return parse_any_law(self.form, self.parameters)


@dataclass(frozen=True)
class CatalogFamily:
    """A family created in every fresh database with its published laws."""

    name: str
    description: str
    laws: tuple[PublishedLaw, ...]
    param_convention: str = TOTAL
    flops_per_param_token: float = 6.0
    tags: dict[str, str] = field(default_factory=dict)
    # What the family's losses measure (Family.metric); empty: not said.
    metric: str = ""


HOFFMANN_2022 = (
    "Hoffmann et al. 2022, Training Compute-Optimal Large Language Models, arXiv:2203.15556"
)
BESIROGLU_2024 = (
    "Besiroglu, Erdil, Barnett, You 2024, Chinchilla Scaling: A replication attempt, "
    "arXiv:2404.10102"
)
SARDANA_2023 = "Sardana, Portes, Doubov, Frankle 2023, Beyond Chinchilla-Optimal, arXiv:2401.00448"
MUENNIGHOFF_2023 = (
    "Muennighoff et al. 2023, Scaling Data-Constrained Language Models, arXiv:2305.16264"
)
LI_2025 = (
    "Li et al. 2025, Predictable Scale: Part I — Optimal Hyperparameter Scaling Law in Large "
    "Language Model Pretraining, arXiv:2503.04715"
)
KAPLAN_2020 = "Kaplan et al. 2020, Scaling Laws for Neural Language Models, arXiv:2001.08361"
# The families plans' training setups read: the Step Law by default, and the critical batch.
STEP_LAW_FAMILY = "step-law-2025"
CRITICAL_BATCH_FAMILY = "critical-batch-kaplan-2020"
C4_VALIDATION_LOSS = "C4 validation loss, nats/token"
GADRE_2024 = (
    "Gadre et al. 2024, Language models scale reliably with over-training and on downstream "
    "tasks, arXiv:2403.08540"
)


def _gadre(
    dataset: str, e: float, a: float, b: float, eta: float, downstream: tuple[float, float, float]
) -> CatalogFamily:
    epsilon, k, gamma = downstream
    return CatalogFamily(
        name=f"overtraining-gadre-2024-{dataset.lower()}",
        description=(
            f"Gadre et al. 2024 over-training law fitted on {dataset} (C4-val loss), with the "
            "46-task average top-1 error link"
        ),
        metric=C4_VALIDATION_LOSS,
        laws=(
            PublishedLaw(
                "overtraining",
                {"E": e, "a": a, "b": b, "eta": eta, "epsilon": epsilon, "k": k, "gamma": gamma},
                GADRE_2024,
                "Reproduced with the authors' released code and exp_data (default 5-run fit).",
            ),
        ),
    )


CATALOG: tuple[CatalogFamily, ...] = (
    CatalogFamily(
        name="chinchilla-hoffmann-2022",
        description="Chinchilla Approach 3 fit, full (TeX-source) precision parameters",
        laws=(
            PublishedLaw(
                "chinchilla",
                {
                    "E": math.exp(0.5267228),
                    "A": math.exp(6.0073404),
                    "B": math.exp(6.0179186),
                    "alpha": 0.33917084,
                    "beta": 0.2849083,
                },
                HOFFMANN_2022,
                "TeX-source precision (Epoch notebook true_params); the paper body rounds to "
                "E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28, which shifts optima.",
            ),
        ),
    ),
    CatalogFamily(
        name="chinchilla-epoch-2024",
        description="Epoch AI's refit of Chinchilla Approach 3 on the digitised Figure 4 runs",
        laws=(
            PublishedLaw(
                "chinchilla",
                {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658},
                BESIROGLU_2024,
                "Printed paper values; 240 points, Huber likelihood on log loss.",
            ),
        ),
    ),
    CatalogFamily(
        name="inference-sardana-2023",
        description="Chinchilla-form set that reproduces Sardana et al.'s inference-aware results",
        laws=(
            PublishedLaw(
                "chinchilla",
                {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.336, "beta": 0.283},
                SARDANA_2023,
                "alpha 0.336, beta 0.283 reproduce Figure 1 (7B beats 13B, 1.7e22 FLOPs saved).",
            ),
        ),
    ),
    CatalogFamily(
        name="data-constrained-muennighoff-2023",
        description="Muennighoff et al. data-constrained law on C4 (GPT-2 tokenizer)",
        laws=(
            PublishedLaw(
                "data_constrained",
                {
                    "E": math.exp(0.6254804),
                    "A": math.exp(6.255414),
                    "B": math.exp(7.3049974),
                    "alpha": 0.3526596,
                    "beta": 0.3526596,
                    "r_d_star": 15.387756,
                    "r_n_star": 5.309743,
                },
                MUENNIGHOFF_2023,
                "Constants of the authors' repository (huggingface/datablations).",
            ),
        ),
    ),
    _gadre("C4", 1.5083, 141.2772, 189.5155, 0.12124, (0.7589, 1.2885, 0.9722)),
    _gadre("RedPajama", 1.8366, 212.2361, 366.6872, 0.13643, (0.7608, 1.3229, 0.8907)),
    _gadre("RefinedWeb", 1.7345, 157.1163, 246.2067, 0.12720, (0.7677, 1.1281, 0.8215)),
    CatalogFamily(
        name=STEP_LAW_FAMILY,
        description=(
            "Step Law: loss-optimal peak learning rate and batch size (tokens) of a dense LM "
            "from N and D"
        ),
        laws=(
            PublishedLaw(
                STEP_LAW_FORM,
                law_mapping(PUBLISHED_STEP_LAW),
                LI_2025,
                "The authors' mean fit over 1,000 bootstrap resamples: lr = 1.797 N^-0.7129 "
                "D^0.3075, batch = 0.5807 D^0.5709 tokens (N = 7e9, D = 1.4e12: lr 9.35e-4, "
                "batch 5.0e6).",
            ),
        ),
        param_convention=NON_EMBEDDING,
    ),
    CatalogFamily(
        name=CRITICAL_BATCH_FAMILY,
        description="Kaplan et al.'s critical batch B_crit(L) = B_star / L^(1/alpha_B) tokens",
        laws=(
            PublishedLaw(
                CRITICAL_BATCH_FORM,
                law_mapping(KAPLAN_CRITICAL_BATCH),
                KAPLAN_2020,
                "Table 5: alpha_B 0.21, B_star 2.1e8 tokens (the text rounds it to ~2e8). L is "
                "nats/token on WebText2 with their BPE vocabulary: indicative elsewhere.",
            ),
        ),
        param_convention=NON_EMBEDDING,
    ),
)
