"""serve: the read API and the web page."""
