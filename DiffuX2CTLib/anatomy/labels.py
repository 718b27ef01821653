"""The label map's table: one uint8 value per structure, for tests, masks and per-organ statistics.

A voxel carries the label of the last labelled solid that covers at least half of it, so bone marrow keeps its
bone's label and an organ's label is cut where a later organ is painted over it. 0 is air and every unlabelled
tissue (mediastinal and mesenteric fat, the spinal canal, interstitial soft tissue).
"""

from __future__ import annotations

LABELS: dict[str, int] = {
    "subcutaneous": 1,  # skin and subcutaneous fat
    "muscle": 2,
    "lung_right": 3,
    "lung_left": 4,
    "airway": 5,
    "heart": 6,
    "aorta": 7,
    "pulmonary_artery": 8,
    "vena_cava": 9,
    "liver": 10,
    "spleen": 11,
    "stomach": 12,
    "kidney_right": 13,
    "kidney_left": 14,
    "bowel": 15,
    "bladder": 16,
    "pancreas": 17,
    "breast": 18,
    "vertebra_cervical": 20,
    "vertebra_thoracic": 21,
    "vertebra_lumbar": 22,
    "sacrum": 23,
    "disc": 24,
    "rib_right": 25,
    "rib_left": 26,
    "costal_cartilage": 27,
    "sternum": 28,
    "clavicle": 29,
    "scapula": 30,
    "hip_bone": 31,  # ilium, ischium, pubis
    "femur": 32,
    "arm_bone": 33,  # humerus, radius, ulna
    "table": 34,
    "metal": 35,
    "nodule": 36,
    "effusion": 37,
}
