"""HTTP face: WebSocket adapter, SockJS, REST resources and the site tree."""
