"""The read API: FastAPI over any store, with bearer-JWT security and the web page."""
