"""The one range of random seeds every command, job and training run accepts."""

MAX_SEED = 2**63 - 1
"""The largest seed: torch.Generator.manual_seed takes no more."""
