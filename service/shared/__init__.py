"""What the API and the workers both stand on, below either of them: the settings read
from the environment and the queue the API sends jobs through (by task name, so the
API never imports worker code). Imports nncore and ``service.store``, never the API."""
