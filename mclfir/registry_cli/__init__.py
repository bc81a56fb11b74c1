"""Commands of the ``mclfir registry`` group: register, review and promote (one module each)."""
