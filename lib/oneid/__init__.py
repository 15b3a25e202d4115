"""OneID: sources -> Delta Lake -> stable OneIDs -> tag tables -> audience diffs."""

__version__ = "0.1.0"
