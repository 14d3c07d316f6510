"""The three-stage plan as data: what each stage trains, freezes and warps with.

Adding a stage is a new row in :data:`STAGES`; the trainer reads only this table.

| stage | command   | trains            | frozen | pol_diff warp | needs earlier stage |
|-------|-----------|-------------------|--------|---------------|---------------------|
| A     | adapt     | base              | -      | (no module)   | -                   |
| B     | learn-pol | correction        | base   | ground truth  | A                   |
| C     | finetune  | base + correction | -      | prediction    | B                   |
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageConfig:
    """One stage of the plan.

    Attributes:
        name: the lineage label ("A", "B", "C").
        command: the CLI command that runs it.
        title: what the stage is for, for logs.
        trainable: model parts that get gradients ("base", "correction").
        with_correction: whether the model has a correction module in this stage.
        warp_source: disparity that warps pol_diff ("gt", "pred") or None without a module.
        requires: the stage that must be in the input checkpoint's lineage.
        loss_terms: "sequence" (exponentially weighted L1 over the base's estimates) and/or
            "final" (L1 on base + correction).
        lr: default peak learning rate.
        feasibility_gate: check base error against max_correction before training.
    """

    name: str
    command: str
    title: str
    trainable: tuple[str, ...]
    with_correction: bool
    warp_source: str | None
    requires: str | None
    loss_terms: tuple[str, ...]
    lr: float
    feasibility_gate: bool = False

    @property
    def frozen(self) -> tuple[str, ...]:
        parts = ("base", "correction") if self.with_correction else ("base",)
        return tuple(p for p in parts if p not in self.trainable)


STAGES: dict[str, StageConfig] = {
    "A": StageConfig("A", "adapt", "domain adaptation of the base model", trainable=("base",),
                     with_correction=False, warp_source=None, requires=None, loss_terms=("sequence",), lr=2e-4),
    "B": StageConfig("B", "learn-pol", "polarization-only learning (base frozen, ground-truth warp)",
                     trainable=("correction",), with_correction=True, warp_source="gt", requires="A",
                     loss_terms=("final",), lr=5e-4, feasibility_gate=True),
    "C": StageConfig("C", "finetune", "joint finetuning (predicted-disparity warp)",
                     trainable=("base", "correction"), with_correction=True, warp_source="pred", requires="B",
                     loss_terms=("sequence", "final"), lr=5e-5),
}

STAGE_BY_COMMAND = {stage.command: stage for stage in STAGES.values()}
