FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# collectstatic signs nothing, but the settings refuse to load without a key; the real one comes at run time.
RUN SECRET_KEY=build-time-only-placeholder-never-used-to-sign-anything-at-run-time python manage.py collectstatic --no-input -v 0
EXPOSE 8000
CMD ["granian", "--interface", "wsgi", "notifier_project.wsgi:application", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--blocking-threads", "16", "--respawn-failed-workers", "--workers-kill-timeout", "30", "--access-log"]
