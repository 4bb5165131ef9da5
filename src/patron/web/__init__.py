"""The server-rendered UI and the browser snippet."""
