"""The layers a spec's network has, planned without torch: one :class:`LayerPlan` per
layer, resolved from the spec (the first layer of a stage has its stride and channel change,
the others keep the shape).

The builder (:mod:`nas.arch.builder`) makes one module per plan, the supernet walks the
same plans, and the latency table's keys (:mod:`nas.latency.keys`) are read from them, so
what each layer will be is decided here once.
"""

from __future__ import annotations

from dataclasses import dataclass

from nas.arch.spec import ArchSpec


@dataclass(frozen=True)
class LayerPlan:
    """Everything one layer needs, resolved from the spec."""

    stage: int
    index: int  # position within the stage
    op: str
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    expand: int
    se: float
    skip: str
    drop_path: float  # only used when the layer has a residual add

    @property
    def shapes_match(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def has_residual(self) -> bool:
        return self.skip == "pool" or (self.skip == "identity" and self.shapes_match)

    @property
    def se_channels(self) -> int:
        # Squeeze width follows the layer's input, not its expanded width (the reference rule).
        return max(1, int(self.in_channels * self.se))


def plan_layers(spec: ArchSpec) -> tuple[LayerPlan, ...]:
    """One :class:`LayerPlan` per layer, in order; drop-path rates rise linearly from 0."""
    total = spec.num_layers
    plans: list[LayerPlan] = []
    for stage_idx, (stage, stage_in) in enumerate(zip(spec.stages, spec.stage_inputs())):
        for j in range(stage.repeats):
            plans.append(LayerPlan(
                stage=stage_idx, index=j, op=stage.op, kernel=stage.kernel,
                stride=stage.stride if j == 0 else 1,
                in_channels=stage_in if j == 0 else stage.out,
                out_channels=stage.out, expand=stage.expand, se=float(stage.se),
                skip=stage.skip,
                drop_path=float(spec.drop_path_rate) * len(plans) / total,
            ))
    return tuple(plans)


__all__ = ["LayerPlan", "plan_layers"]
