"""The DiffuX2CT network: tri-plane conditioning with an implicit decoder, and a shifted-window 3D U-Net denoiser."""

from .config import ModelConfig
from .network import DiffuX2CTNet

__all__ = ["DiffuX2CTNet", "ModelConfig"]
