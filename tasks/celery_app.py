"""The worker entry: ``celery -A tasks.celery_app worker``."""

from service import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
