"""The read-only HTTP API, report pages and live view (FastAPI): ``create_app(source, token)``;
``edgenas serve`` runs it on uvicorn (``server.serve``)."""
