"""Every random draw of a phantom patient: sex, habitus, size, age and bone density, posture, arms, contrast
phase, tissue densities, extras and findings, scanner noise and kernel, and a smooth deformation field.

All draws come from ``numpy.random.default_rng(seed)`` on the CPU in one fixed order, so the same seed gives the
same patient whatever the device, region or grid. ``Patient.rng`` carries on for the organ builders' own draws,
which are also made in a fixed order (every organ is built for every region).

Densities (HU) are drawn inside published adult ranges; sources are listed in ``Resources/Anatomy/REFERENCES.md``:
Kalender WA, "Computed Tomography", 3rd ed. 2011 (tissue HU table); Boll DT & Merkle EM, "Diffuse liver disease:
strategies for hepatic CT and MR imaging", RadioGraphics 2009 (liver 55-65 HU, spleen about 8-10 HU less);
Bae KT, "Intravenous contrast medium administration and scan timing at CT", Radiology 2010 (aortic and hepatic
enhancement per phase); Jang S et al., "Opportunistic osteoporosis screening at routine abdominal and thoracic CT:
normative L1 trabecular attenuation values in more than 20 000 adults", Radiology 2019 (L1 trabecular HU by
age); Gevenois PA et al.,
"Comparison of computed density and microscopic morphometry in pulmonary emphysema", AJRCCM 1996 (lung
parenchyma about -850 HU at full inspiration); Goodpaster BH et al., J Appl Physiol 2000, and Martin L et al.,
J Clin Oncol 2013 (muscle HU falls with muscle fat, age and BMI); Hales CM et al., NCHS Data Brief 360, 2020 (BMI:
42 % of US adults obese). The ranges were checked against the real training CTs:
``Testing/benchmarks/results/anatomy-statistics.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tissue:
    """HU of the soft tissues, fluids and bone of one patient (contrast phase already applied)."""

    skin: float
    fat: float  # subcutaneous
    visceral_fat: float  # visceral, mediastinal and epicardial fat (a little denser than subcutaneous)
    muscle: float
    lung: float
    blood: float  # venous blood / right heart
    arterial: float  # aorta and left heart
    myocardium: float
    liver: float
    spleen: float
    kidney: float
    kidney_medulla: float
    pancreas: float
    bowel_wall: float
    fluid: float
    urine: float
    cartilage: float
    disc: float
    cortical: float
    trabecular: float
    marrow: float  # long-bone medullary cavity (fatty marrow)
    csf: float


@dataclass(frozen=True)
class Patient:
    """The drawn patient: body proportions (mm scale factors), habitus, pose, protocol and tissue HU."""

    seed: int
    sex: str  # "F" or "M"
    age: float
    bmi: float  # body-mass index (kg/m^2): drives fat thickness, visceral fat, body size and muscle density
    height: float  # craniocaudal scale of the skeleton and organs (1 = reference male)
    width: float  # lateral scale of the trunk
    depth: float  # anteroposterior scale of the trunk
    outline_power: float  # exponent of the trunk's superellipse cross-section: 2 is an ellipse, higher is boxier
    fat_mm: float  # subcutaneous fat thickness at the flank
    visceral: float  # 0..1 amount of visceral fat
    yaw: float  # posture rotation (degrees) about z, x, y
    pitch: float
    roll: float
    lordosis_mm: float
    kyphosis_mm: float
    scoliosis_mm: float  # 0 unless the finding is drawn
    arms_up: bool
    contrast: str  # "none", "arterial" or "portal"
    inspiration: float  # 0..1 depth of the breath hold (lower domes, darker lungs)
    bladder_fill: float  # 0..1
    table: bool
    implant: bool
    wires: bool  # sternotomy wires
    ecg_leads: bool
    nodules: int
    effusion: str  # "", "left" or "right"
    fracture_level: str  # "" or the name of a compressed vertebra
    noise_hu: float
    kernel: float  # > 0 smooths, < 0 sharpens (weight of each neighbour in a 3-tap filter)
    deformation: np.ndarray  # (3, 4, 4, 4) control displacements (mm) of the smooth warp
    tissue: Tissue
    rng: np.random.Generator

    @property
    def female(self) -> bool:
        return self.sex == "F"


def _tissue(rng: np.random.Generator, age: float, bmi: float, contrast: str, inspiration: float) -> Tissue:
    blood = rng.uniform(38, 52)
    liver = rng.uniform(52, 66)
    kidney = rng.uniform(28, 36)
    arterial, venous, myocardium = blood, blood, rng.uniform(35, 50)
    liver_enhancement, kidney_cortex, kidney_medulla = 0.0, kidney, kidney - 2.0
    if contrast == "arterial":
        arterial = rng.uniform(250, 420)
        venous = rng.uniform(90, 250)
        myocardium = rng.uniform(90, 130)
        liver_enhancement = rng.uniform(10, 25)
        kidney_cortex, kidney_medulla = rng.uniform(150, 220), rng.uniform(60, 100)
    elif contrast == "portal":
        arterial = rng.uniform(140, 200)
        venous = rng.uniform(130, 190)
        myocardium = rng.uniform(80, 110)
        liver_enhancement = rng.uniform(50, 70)
        kidney_cortex = rng.uniform(150, 200)
        kidney_medulla = kidney_cortex - rng.uniform(0, 20)
    # Trabecular bone: L1 about 226 +- 44 HU under 30 years, falling 2.5 HU a year (Jang et al. 2019).
    trabecular = float(np.clip(235 - 2.5 * (age - 25) + rng.normal(0, 35), 60, 340))
    # Cortical bone as clinical CT shows it (thin cortices partial-volumed at 0.6-2 mm voxels): about 1100-1400 HU
    # (the real training CTs' bone reaches a 99th percentile of 1140-1370 HU at their own voxel size), falling
    # with age as the cortex thins and grows porous.
    cortical = float(np.clip(1350 - 6.0 * max(age - 40, 0) + rng.normal(0, 100), 900, 1700))
    fat = rng.uniform(-115, -90)
    # Skeletal muscle: about 45-55 HU when young and lean, lower with age and adiposity (fat inside the muscle;
    # Goodpaster et al. 2000, Martin et al. 2013: below 41 HU at BMI < 25 and 33 HU at BMI >= 25 counts as low).
    muscle = float(np.clip(54 - 0.2 * (age - 20) - 0.6 * max(bmi - 22, 0) + rng.normal(0, 5), 22, 62))
    # Lung parenchyma: about -870 HU at full inspiration, denser in a shallow breath hold (Gevenois et al. 1996).
    lung = -870 + 110 * (1 - inspiration) + rng.normal(0, 12)
    return Tissue(
        skin=rng.uniform(20, 60),
        fat=fat,
        visceral_fat=fat + rng.uniform(4, 14),
        muscle=muscle,
        lung=lung,
        blood=venous,
        arterial=arterial,
        myocardium=myocardium,
        liver=liver + liver_enhancement,
        spleen=liver - rng.uniform(6, 12) + (1.2 * liver_enhancement if contrast != "none" else 0),
        kidney=kidney_cortex,
        kidney_medulla=kidney_medulla,
        pancreas=rng.uniform(35, 50) + 0.8 * liver_enhancement,
        bowel_wall=rng.uniform(30, 50) + 0.6 * liver_enhancement,
        fluid=rng.uniform(0, 20),
        urine=rng.uniform(0, 15),
        cartilage=float(np.clip(110 + 2.0 * (age - 20) + rng.normal(0, 30), 80, 320)),
        disc=rng.uniform(70, 110),
        cortical=cortical,
        trabecular=trabecular,
        marrow=rng.uniform(-60, 20),
        csf=rng.uniform(5, 15),
    )


def draw_patient(seed: int, implant: bool | None = None) -> Patient:
    """The patient of ``seed``; ``implant`` forces spinal screws on or off (None: drawn, about one in six)."""
    rng = np.random.default_rng(seed)
    sex = "F" if rng.random() < 0.5 else "M"
    age = float(rng.uniform(20, 88))
    bmi = float(np.clip(rng.lognormal(np.log(27.0), 0.2), 17, 48))
    female = sex == "F"
    height = float(rng.normal(0.93 if female else 1.0, 0.045))
    width = float(rng.normal(0.93 if female else 1.0, 0.05))
    depth = float(rng.normal(0.95 if female else 1.0, 0.06))
    fat_mm = float(np.clip(2.0 + (bmi - 17) * (2.4 if female else 1.8) + rng.normal(0, 3.5), 3, 75))
    visceral = float(np.clip((bmi - 20) / 18 * (0.7 if female else 1.0) + rng.normal(0, 0.12), 0.0, 1.0))
    yaw, pitch, roll = (float(rng.uniform(-lim, lim)) for lim in (5.0, 4.0, 3.0))
    lordosis = float(rng.uniform(6, 22))
    kyphosis = float(rng.uniform(8, 22) + 0.12 * max(age - 50, 0))
    arms_up = bool(rng.random() < 0.65)
    contrast = str(rng.choice(["none", "arterial", "portal"], p=[0.4, 0.25, 0.35]))
    inspiration = float(rng.uniform(0.4, 1.0))
    bladder_fill = float(rng.uniform(0.1, 1.0))
    table = bool(rng.random() < 0.85)
    implant_drawn = bool(rng.random() < 1 / 6)
    wires = bool(rng.random() < 0.06)
    ecg = bool(rng.random() < 0.15)
    nodules = int(rng.poisson(0.4)) if rng.random() < 0.3 else 0
    effusion = str(rng.choice(["left", "right"])) if rng.random() < 0.06 else ""
    scoliosis = float(rng.uniform(10, 35) * rng.choice([-1, 1])) if rng.random() < 0.08 else float(rng.normal(0, 2))
    fracture = (
        str(rng.choice(["T11", "T12", "L1", "L2", "L3"])) if rng.random() < 0.05 + 0.002 * max(age - 50, 0) else ""
    )
    noise_hu = float(rng.uniform(6, 28))
    kernel = float(rng.uniform(-0.12, 0.22))
    deformation = rng.normal(0.0, 4.0, size=(3, 4, 4, 4))
    tissue = _tissue(rng, age, bmi, contrast, inspiration)
    # From its own stream, so that everything else about a seed's patient stays as it was. 2.2-3.4: at mid-lung the
    # real training chests fill 81 % (platipy) and 89 % (plastimatch) of their bounding box; a power 3 for every
    # patient filled 82-88 % (Testing/benchmarks/results/anatomy-statistics.md).
    outline_power = float(np.random.default_rng([seed, 1]).uniform(2.2, 3.4))
    return Patient(
        seed=seed,
        sex=sex,
        age=age,
        bmi=bmi,
        height=height,
        width=width * (1 + 0.004 * (bmi - 25)),
        depth=depth * (1 + 0.006 * (bmi - 25)),
        outline_power=outline_power,
        fat_mm=fat_mm,
        visceral=visceral,
        yaw=yaw,
        pitch=pitch,
        roll=roll,
        lordosis_mm=lordosis,
        kyphosis_mm=kyphosis,
        scoliosis_mm=scoliosis,
        arms_up=arms_up,
        contrast=contrast,
        inspiration=inspiration,
        bladder_fill=bladder_fill,
        table=table,
        implant=implant_drawn if implant is None else bool(implant),
        wires=wires,
        ecg_leads=ecg,
        nodules=nodules,
        effusion=effusion,
        fracture_level=fracture,
        noise_hu=noise_hu,
        kernel=kernel,
        deformation=deformation,
        tissue=tissue,
        rng=rng,
    )
