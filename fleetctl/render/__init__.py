"""Rendering the fleet's files from Jinja2 templates."""
