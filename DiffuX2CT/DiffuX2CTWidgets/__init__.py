"""The Slicer-side parts of the DiffuX2CT module, one job per file: the panel's behaviour (``panel``), its
parameter node (``parameters``), installing what the background process needs (``install``), DICOM tags of the
radiograph nodes (``dicom``) and the sample data (``sampledata``). They may import qt and slicer; the engine
(``DiffuX2CTLib``) never imports them."""
