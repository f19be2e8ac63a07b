"""Message buffer and archive backends, and the flusher between them."""
