"""Raw dataset format: naming, dataset.json, image I/O, validation and converters."""
