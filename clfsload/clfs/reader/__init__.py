"""Reading a CLFS container, step by step; :class:`clfsload.clfs.container.Container` puts the steps together."""
