"""Diffusion over CT volumes: the noise schedule, the training losses, the sampler and projection guidance."""
