"""The release of dbs_admin: recorded in every manifest, read by packaging. Imports nothing."""

__version__ = "0.1.0"
