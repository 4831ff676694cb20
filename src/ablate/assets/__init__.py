"""Data shipped with ablate; see README.md here for provenance and licences."""
