"""Pure translators, one module per wire format; FORMATS maps a format name to its module."""
