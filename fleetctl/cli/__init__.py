"""The click front end: thin commands over the domain modules."""
