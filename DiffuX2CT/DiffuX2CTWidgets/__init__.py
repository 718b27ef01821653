"""The Slicer-side parts of the DiffuX2CT module, one job per file: the panel's behaviour (``panel``), its
parameter node (``parameters``), installing or upgrading what the background process needs (``install``), DICOM
tags of the radiograph nodes (``dicom``), Export as DICOM (``export``), the session's shared scene logic
(``shared``) and the sample data (``sampledata``). They may import qt and slicer; the engine (``DiffuX2CTLib``)
never imports them."""
