"""gunicorn entry point: ``gunicorn wsgi:app`` (settings in gunicorn.conf.py)."""

from app import create_app

app = create_app()
