"""The condition catalogue: declarative data (indicators per area, concepts and their codes, sites) and its loaders."""
