"""The two reference models: SPGNet (2D-to-3D lifting) and the volumetric image model.

``load_checkpoint(path, device="cpu")`` returns the model of a ``fastpose train`` checkpoint, built
from its stored config, in eval mode (metadata in ``model.checkpoint_info``).
"""

from __future__ import annotations

from .checkpoint import MODEL_KINDS, load_checkpoint
from .spgnet import SPGNet, SPGNetConfig, SPGNetLossWeights, SPGNetOutput, spgnet_loss
from .volumetric import VolumetricConfig, VolumetricPoseNet

__all__ = ["MODEL_KINDS", "load_checkpoint", "SPGNet", "SPGNetConfig", "SPGNetLossWeights", "SPGNetOutput",
           "spgnet_loss", "VolumetricConfig", "VolumetricPoseNet"]
