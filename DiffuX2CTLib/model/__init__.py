"""The DiffuX2CT network: tri-plane conditioning with an implicit decoder, and a shifted-window 3D U-Net denoiser;
its configuration, weights file and model card."""
