"""Ground floor: the error type, devices and precision, seeds, output checks and atomic file writing."""
