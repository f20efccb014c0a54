"""Our one vocabulary for requests: parsing and validation of client bodies."""
