"""The compile worker: receives jobs, builds them in a sandbox, packs and uploads artifacts."""
