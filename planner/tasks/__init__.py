"""Downstream-task accuracy from scaling laws, in two steps (Bhagia et al. 2024, "Establishing
Task Scaling Laws via Compute-Efficient Model Ladders", arXiv 2412.04403).

Step 1 (loss_law): a task loss as a Chinchilla-form law of parameters N and tokens D,
L(N, D) = E + A / N^alpha + B / D^beta, fitted on each ladder run's final checkpoints.
Step 2 (link): accuracy as a sigmoid of that task loss, fitted on the runs' checkpoints after
the first 10%. Chained (chain), they predict a target model's accuracy from (N, D) alone; the
link's inverse gives the task loss a target accuracy needs, and since step 1 is a ChinchillaLaw
the planner's loss-target planning finds the (N, D) for that loss.

Conventions:
- Task loss is bits per byte (bpb) of the correct answer's continuation given the 5-shot
  prompt, the OLMo evaluator's `eval/downstream_bpb/<task>_rc_5shot_bpb`: the answer's summed
  negative log-likelihood in nats divided by ln 2 and by its length in UTF-8 bytes. Not nats per
  token: it is independent of the tokenizer, and not comparable with the language-modelling
  losses elsewhere in the planner. The step-1 ChinchillaLaw's E, A, B are therefore in bpb.
- Accuracy is a fraction in [0, 1] (ranked classification, length-normalised), not percent.
- N is the parameter count the ladder's final.json gives (`n`, non-embedding), D tokens seen.
- Predictability: the spread of loss and accuracy over a run's last 10 checkpoints (spread);
  tasks noisier than the average task are the ones the paper predicts worse.
"""

from planner.tasks.chain import TaskPrediction, TaskScalingLaw, fit_task_scaling_law
from planner.tasks.link import SigmoidLink, fit_sigmoid_link
from planner.tasks.loss_law import fit_task_loss_law
from planner.tasks.olmo import MAIN_TASKS, TASKS, VARIANCE_TASKS, TaskColumns, task
from planner.tasks.runs import RunCheckpoints, final_point, link_points, moving_average
from planner.tasks.spread import CheckpointSpread, checkpoint_spread, noisy_tasks

__all__ = [
    "MAIN_TASKS",
    "TASKS",
    "VARIANCE_TASKS",
    "CheckpointSpread",
    "RunCheckpoints",
    "SigmoidLink",
    "TaskColumns",
    "TaskPrediction",
    "TaskScalingLaw",
    "checkpoint_spread",
    "final_point",
    "fit_sigmoid_link",
    "fit_task_loss_law",
    "fit_task_scaling_law",
    "link_points",
    "moving_average",
    "noisy_tasks",
    "task",
]
