"""Command-line tools and builders (run as `python -m scripts.<name>`)."""
