"""The application side: MRML scene logic (the only Slicer-speaking file), process runner and background worker."""
