"""Training: the trainer (set-up, resume, step, log, checkpoint), training samples, the CT cache and view posing."""
