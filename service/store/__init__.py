"""The SQL store: typed SQLAlchemy 2.0 models and the domain functions that query
and change them. No Flask here: the API, the CLI and the workers all use it."""
