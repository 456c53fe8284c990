"""Lambda function package (see handler.py)."""
