"""Grand-Challenge algorithm I/O: inputs.json, sockets, and comparing outputs."""
