"""The augmentation recipe (part of the data flow's parameters; a form in the Prefect UI)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_ROTATE_DEG = 20.0


class AugmentConfig(BaseModel):
    """How to augment a dataset (the Prefect UI renders this as a form)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    copies: int = Field(default=3, ge=0, le=20, description="Augmented copies per train image.")
    seed: int = Field(default=0, ge=0, description="Seed; the same seed gives identical files.")
    augment_eval_splits: bool = Field(
        default=False,
        description="Also augment valid/test. Off by default to keep evaluation honest.",
    )
    hflip_p: float = Field(default=0.5, ge=0, le=1, description="Horizontal flip probability.")
    max_rotate_deg: float = Field(default=10.0, ge=0, description="Max rotation (°), ≤ 20.")
    scale_min: float = Field(default=0.85, ge=0.5, le=1.5, description="Smallest zoom factor.")
    scale_max: float = Field(default=1.15, ge=0.5, le=1.5, description="Largest zoom factor.")
    translate: float = Field(default=0.1, ge=0, le=0.25, description="Max shift (image fraction).")
    brightness: float = Field(default=0.2, ge=0, le=0.5, description="Brightness change limit.")
    contrast: float = Field(default=0.2, ge=0, le=0.5, description="Contrast change limit.")
    hue_shift: int = Field(default=8, ge=0, le=30, description="Hue shift limit (keep skin real).")
    saturation_shift: int = Field(default=25, ge=0, le=60, description="Saturation shift limit.")
    color_p: float = Field(default=0.7, ge=0, le=1, description="Probability of each color change.")
    blur_noise_p: float = Field(
        default=0.2, ge=0, le=1, description="Probability of one of blur, noise or JPEG artifacts."
    )
    min_visibility: float = Field(
        default=0.6, ge=0, le=1, description="Keep a box only if this fraction stays in view."
    )
    min_area: float = Field(default=100.0, ge=0, description="Smallest kept box area (pixels²).")
    jpeg_quality: int = Field(default=95, ge=50, le=100, description="JPEG quality of outputs.")
    workers: int = Field(default=2, ge=1, le=32, description="Worker processes (same output).")

    @field_validator("max_rotate_deg")
    @classmethod
    def _small_rotation(cls, value: float) -> float:
        if value > MAX_ROTATE_DEG:
            raise ValueError(
                f"max_rotate_deg={value:g} is above {MAX_ROTATE_DEG:g}°: letters such as H/U "
                "and G/Q differ by orientation, so large rotations change the label"
            )
        return value

    @field_validator("min_visibility")
    @classmethod
    def _mostly_visible(cls, value: float) -> float:
        if value < 0.3:
            raise ValueError(
                f"min_visibility={value:g} is below 0.3: a hand mostly out of view no longer "
                "shows which letter it signs"
            )
        return value

    @model_validator(mode="after")
    def _ordered_scale(self) -> AugmentConfig:
        if self.scale_min > self.scale_max:
            raise ValueError(
                f"scale_min={self.scale_min:g} is larger than scale_max={self.scale_max:g}"
            )
        return self
