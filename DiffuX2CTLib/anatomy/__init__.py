"""Procedural, anatomically realistic adult CT phantoms in torch: the training data that needs no download.

``phantom.generate_phantom(seed, grid, region)`` paints a patient drawn from ``seed`` (sex, habitus, age, posture,
contrast phase, extras, findings) organ system by organ system (:mod:`.body`, :mod:`.lungs`, :mod:`.heart`,
:mod:`.abdomen`, :mod:`.skeleton`, :mod:`.extras`) in HU on any device; ``labels=True`` adds a label map
(:data:`.labels.LABELS`). Sizes and densities follow published adult references listed in
``Resources/Anatomy/REFERENCES.md``.
"""
