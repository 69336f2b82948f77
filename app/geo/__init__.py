"""Site-input parsing: coordinate systems, DMS text, land-survey coordinate files and site geometries."""
